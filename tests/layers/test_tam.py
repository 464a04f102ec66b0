import pytest
import torch

from temporal_roi_align.layers import TemporalAdaptiveModule


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread avoids thread-pool waits (tens of ms an op on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomize(module):
    """Random weights everywhere, BN statistics and affine parameters included."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif not name.endswith("num_batches_tracked"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator))


def batch_norm(rows, bn, training):
    """rows: list (over the batch) of lists (over features) of scalars."""
    out = []
    for f in range(len(rows[0])):
        values = [row[f] for row in rows]
        if training:
            mean = sum(values) / len(values)
            var = sum((v - mean) ** 2 for v in values) / len(values)
        else:
            mean, var = bn.running_mean[f], bn.running_var[f]
        out.append([(v - mean) / torch.sqrt(var + bn.eps) * bn.weight[f] + bn.bias[f] for v in values])
    return [[out[f][r] for f in range(len(out))] for r in range(len(rows))]


def reference_tam(module, x, training):
    """The paper's equations with loops: s = spatial mean; V = local branch; Theta = global branch;
    Y[c, t] = sum_k Theta[c, k] * V[c, t + k - K//2] * X[c, t + k - K//2]."""
    T, K = module.num_frames, module.kernel_size
    conv1, bn1, _, conv2, _ = module.local_branch
    fc1, bn2, _, fc2, _ = module.global_branch
    channels, hidden = conv1.in_channels, conv1.out_channels
    local_k = conv1.kernel_size[0]
    groups = x.shape[0] // T
    s = [[[x[n * T + t, c].mean() for t in range(T)] for c in range(channels)] for n in range(groups)]

    # Local branch: conv (C -> C/beta, kernel local_k, zero padding), BN over (N, T), ReLU, 1x1 conv, sigmoid.
    h = [
        [
            sum(
                conv1.weight[o, c, j] * s[n][c][t + j - local_k // 2]
                for c in range(channels)
                for j in range(local_k)
                if 0 <= t + j - local_k // 2 < T
            )
            for o in range(hidden)
        ]
        for n in range(groups)
        for t in range(T)
    ]  # rows (n, t), features o
    h = [[torch.relu(v) for v in row] for row in batch_norm(h, bn1, training)]
    V = [
        [
            [torch.sigmoid(sum(conv2.weight[c, o, 0] * h[n * T + t][o] for o in range(hidden))) for t in range(T)]
            for c in range(channels)
        ]
        for n in range(groups)
    ]

    # Global branch, per (n, c): FC T -> alpha*T, BN over the N*C rows, ReLU, FC -> K, softmax.
    g = [
        [sum(fc1.weight[j, t] * s[n][c][t] for t in range(T)) for j in range(fc1.out_features)]
        for n in range(groups)
        for c in range(channels)
    ]
    g = [[torch.relu(v) for v in row] for row in batch_norm(g, bn2, training)]
    theta = []
    for row in g:
        logits = [sum(fc2.weight[k, j] * row[j] for j in range(len(row))) for k in range(K)]
        exps = [torch.exp(v) for v in logits]
        theta.append([e / sum(exps) for e in exps])

    out = torch.zeros_like(x)
    for n in range(groups):
        for c in range(channels):
            for t in range(T):
                for k in range(K):
                    src = t + k - K // 2
                    if 0 <= src < T:
                        out[n * T + t, c] += theta[n * channels + c][k] * V[n][c][src] * x[n * T + src, c]
    return out


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize(
    "channels, num_frames, groups, kwargs",
    [
        (8, 4, 2, {}),
        (6, 5, 1, dict(kernel_size=5, alpha=1, beta=3, local_kernel_size=1)),
        (4, 3, 3, dict(kernel_size=1, beta=2)),
        (5, 1, 2, dict(beta=5)),  # one frame: the kernel's centre tap only
    ],
)
def test_matches_paper_equations(training, channels, num_frames, groups, kwargs):
    torch.manual_seed(0)
    module = TemporalAdaptiveModule(channels, num_frames, **kwargs).double()
    randomize(module)
    module.train(training)
    x = torch.randn(groups * num_frames, channels, 3, 2, dtype=torch.float64)
    with torch.no_grad():
        expected = reference_tam(module, x, training)
        got = module(x)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_constant_input_passes_through_interior_frames():
    # With importance 1 (large conv2 weights) and a constant-in-time input, softmax weights sum to 1:
    # interior frames come out unchanged.
    module = TemporalAdaptiveModule(4, 6).double().eval()
    with torch.no_grad():
        module.local_branch[3].weight.fill_(0.0)
        module.local_branch[3].weight.add_(1e3 * torch.ones_like(module.local_branch[3].weight))
        module.local_branch[1].running_mean.fill_(-1e3)  # BN output positive -> after ReLU positive
    x = torch.rand(1, 4, 3, 3, dtype=torch.float64).expand(6, 4, 3, 3).contiguous()
    out = module(x)
    torch.testing.assert_close(out[1:-1], x[1:-1])
    assert torch.all(out[0] < x[0] + 1e-12) and torch.all(out[-1] < x[-1] + 1e-12)


@pytest.mark.parametrize("training", [False, True])
def test_gradcheck(training):
    torch.manual_seed(0)
    module = TemporalAdaptiveModule(4, 3, beta=2).double()
    randomize(module)
    module.train(training)
    x = torch.randn(6, 4, 1, 2, dtype=torch.float64, requires_grad=True)
    params = tuple(module.parameters())

    def fn(x, *weights):
        return torch.func.functional_call(module, dict(zip([n for n, _ in module.named_parameters()], weights)), (x,))

    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-5)


def test_parameter_shapes_follow_the_published_module():
    module = TemporalAdaptiveModule(64, 8)
    shapes = {
        name: tuple(p.shape) for name, p in module.state_dict().items() if not name.endswith("num_batches_tracked")
    }
    assert shapes == {
        "local_branch.0.weight": (16, 64, 3),
        "local_branch.1.weight": (16,),
        "local_branch.1.bias": (16,),
        "local_branch.1.running_mean": (16,),
        "local_branch.1.running_var": (16,),
        "local_branch.3.weight": (64, 16, 1),
        "global_branch.0.weight": (16, 8),
        "global_branch.1.weight": (16,),
        "global_branch.1.bias": (16,),
        "global_branch.1.running_mean": (16,),
        "global_branch.1.running_var": (16,),
        "global_branch.3.weight": (3, 16),
    }


def test_groups_are_independent_in_eval():
    module = TemporalAdaptiveModule(8, 4).eval()
    randomize(module)
    x = torch.randn(12, 8, 5, 5)
    whole = module(x)
    torch.testing.assert_close(torch.cat([module(x[:4]), module(x[4:8]), module(x[8:])]), whole)


def test_channels_last_and_empty_batch():
    module = TemporalAdaptiveModule(8, 2).eval()
    x = torch.randn(4, 8, 3, 5)
    torch.testing.assert_close(module(x.to(memory_format=torch.channels_last)), module(x))
    assert module(torch.zeros(0, 8, 3, 5)).shape == (0, 8, 3, 5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(channels=0, num_frames=3), "channels must be positive"),
        (dict(channels=8, num_frames=3, kernel_size=2), "kernel_size must be odd"),
        (dict(channels=8, num_frames=3, local_kernel_size=0), "local_kernel_size must be odd"),
        (dict(channels=3, num_frames=3), r"channels \(3\) must be >= beta \(4\)"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TemporalAdaptiveModule(**kwargs)


def test_bad_input_shape():
    module = TemporalAdaptiveModule(8, 4)
    with pytest.raises(ValueError, match=r"must be \[N\*4, 8, H, W\].*got shape \(6, 8, 2, 2\)"):
        module(torch.zeros(6, 8, 2, 2))
    with pytest.raises(ValueError, match=r"got shape \(4, 7, 2, 2\)"):
        module(torch.zeros(4, 7, 2, 2))
