"""The toolbox's (mmtracking 0.14 on mmdetection 2.x) parameters and test-time computations that
its ImageNet VID detectors and MaskTrack R-CNN share, written from its model definitions: state
dicts with its names and shapes, and plain-torch references for the converted models
(test_convert_checkpoint.py, test_convert_masktrack.py, test_convert_flow_checkpoints.py)."""

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
BN_STATS = ("weight", "bias", "running_mean", "running_var")


class ToolboxParams:
    """Fills ``state_dict`` with parameters named as the toolbox names them: random values
    (scaled by fan-in; BatchNorm variances positive), or empty tensors on the meta device."""

    def __init__(self, device="cpu", seed=0):
        self.state_dict = OrderedDict()
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)

    def param(self, name, *shape, fan_in=None):
        if self.device == "meta":
            self.state_dict[name] = torch.empty(shape, device="meta")
            return
        scale = math.sqrt(1.0 / fan_in) if fan_in else 0.1
        self.state_dict[name] = torch.randn(shape, generator=self.generator) * scale

    def conv(self, name, cout, cin, k, bias=False, groups=1):
        self.param(f"{name}.weight", cout, cin // groups, k, k, fan_in=cin // groups * k * k)
        if bias:
            self.param(f"{name}.bias", cout)

    def linear(self, name, cout, cin):
        self.param(f"{name}.weight", cout, cin, fan_in=cin)
        self.param(f"{name}.bias", cout)

    def bn(self, name, channels):
        for stat in BN_STATS:
            self.param(f"{name}.{stat}", channels)
        if self.device != "meta":
            self.state_dict[f"{name}.weight"] = 0.5 + torch.rand(channels, generator=self.generator) * 0.5
            self.state_dict[f"{name}.running_var"] = 0.5 + torch.rand(channels, generator=self.generator)
        self.state_dict[f"{name}.num_batches_tracked"] = torch.tensor(1000, device=self.device)

    def rpn_head(self, prefix, channels, num_anchors):
        """mmdet's RPNHead: 3x3 ``rpn_conv``, 1x1 ``rpn_cls`` (one sigmoid logit per anchor) and
        ``rpn_reg`` (4 deltas per anchor)."""
        self.conv(prefix + "rpn_conv", channels, channels, 3, bias=True)
        self.conv(prefix + "rpn_cls", num_anchors, channels, 1, bias=True)
        self.conv(prefix + "rpn_reg", 4 * num_anchors, channels, 1, bias=True)

    def resnet(self, prefix, depth=50, groups=1, base_width=4, base_channels=64):
        """mmdet's ResNet / ResNeXt (torchvision's names) under ``prefix``; returns the output
        channels of its 4 stages."""
        self.conv(prefix + "conv1", base_channels, 3, 7)
        self.bn(prefix + "bn1", base_channels)
        inplanes, stage_channels = base_channels, []
        for i, num_blocks in enumerate(STAGE_BLOCKS[depth]):
            planes = base_channels * 2**i
            width = planes if groups == 1 else math.floor(planes * base_width / 64) * groups
            for j in range(num_blocks):
                p = f"{prefix}layer{i + 1}.{j}."
                self.conv(p + "conv1", width, inplanes, 1)
                self.bn(p + "bn1", width)
                self.conv(p + "conv2", width, width, 3, groups=groups)
                self.bn(p + "bn2", width)
                self.conv(p + "conv3", planes * 4, width, 1)
                self.bn(p + "bn3", planes * 4)
                if j == 0:
                    self.conv(p + "downsample.0", planes * 4, inplanes, 1)
                    self.bn(p + "downsample.1", planes * 4)
                inplanes = planes * 4
            stage_channels.append(inplanes)
        return stage_channels


def toolbox_resnet(sd, x, depth=50, strides=(1, 2, 2, 2), dilations=(1, 1, 1, 1), prefix="detector.backbone."):
    """ResNet, "pytorch" style (stride on the 3x3 conv), stage i with ``strides[i]`` (first block)
    and ``dilations[i]`` (every block), BatchNorm in eval mode: the outputs of the 4 stages."""

    def bn(t, name):
        return F.batch_norm(
            t,
            sd[f"{name}.running_mean"],
            sd[f"{name}.running_var"],
            sd[f"{name}.weight"],
            sd[f"{name}.bias"],
            False,
            0.0,
            1e-5,
        )

    x = F.relu(bn(F.conv2d(x, sd[prefix + "conv1.weight"], stride=2, padding=3), prefix + "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    outs = []
    for i, num_blocks in enumerate(STAGE_BLOCKS[depth]):
        d = dilations[i]
        for j in range(num_blocks):
            p = f"{prefix}layer{i + 1}.{j}."
            s = strides[i] if j == 0 else 1
            out = F.relu(bn(F.conv2d(x, sd[p + "conv1.weight"]), p + "bn1"))
            w2 = sd[p + "conv2.weight"]
            groups = out.shape[1] // w2.shape[1]
            out = F.relu(bn(F.conv2d(out, w2, stride=s, padding=d, dilation=d, groups=groups), p + "bn2"))
            out = bn(F.conv2d(out, sd[p + "conv3.weight"]), p + "bn3")
            if j == 0:
                x = bn(F.conv2d(x, sd[p + "downsample.0.weight"], stride=s), p + "downsample.1")
            x = F.relu(out + x)
        outs.append(x)
    return outs


def toolbox_anchors(height, width, stride, scales, ratios=(0.5, 1.0, 2.0)):
    """AnchorGenerator at one level: base size = stride, center offset 0, scale_major (ratio-major
    channels), cells row-major: ``[H * W * len(ratios) * len(scales), 4]``."""
    h_ratios = torch.sqrt(torch.tensor(ratios))
    scales = torch.tensor(scales, dtype=torch.float32)
    ws = (stride * (1 / h_ratios)[:, None] * scales[None, :]).reshape(-1)
    hs = (stride * h_ratios[:, None] * scales[None, :]).reshape(-1)
    base = torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=-1)
    ys, xs = torch.meshgrid(torch.arange(height) * float(stride), torch.arange(width) * float(stride), indexing="ij")
    shifts = torch.stack([xs.reshape(-1), ys.reshape(-1)] * 2, dim=1)
    return (shifts[:, None, :] + base[None]).reshape(-1, 4)


def toolbox_decode(rois, deltas, stds, max_shape=None):
    """DeltaXYWHBBoxCoder.decode (means 0): per-class deltas [N, 4k], dw/dh clamped to
    +-log(1000/16), boxes clipped to ``max_shape`` (h, w)."""
    n, k = deltas.shape[0], deltas.shape[1] // 4
    deltas = deltas.reshape(n, k, 4) * torch.tensor(stds, dtype=deltas.dtype)
    rois = rois[:, None, :]
    centers, sizes = (rois[..., :2] + rois[..., 2:]) * 0.5, rois[..., 2:] - rois[..., :2]
    limit = abs(math.log(16 / 1000))
    xy = centers + sizes * deltas[..., :2]
    wh = sizes * deltas[..., 2:].clamp(min=-limit, max=limit).exp()
    boxes = torch.cat([xy - wh * 0.5, xy + wh * 0.5], dim=-1)
    if max_shape is not None:
        boxes[..., 0::2] = boxes[..., 0::2].clamp(0, max_shape[1])
        boxes[..., 1::2] = boxes[..., 1::2].clamp(0, max_shape[0])
    return boxes.reshape(n, 4 * k)


def toolbox_rpn_head(sd, feature):
    """RPNHead.forward_single at one level: the sigmoid logits [H*W*A] and deltas [H*W*A, 4] in
    the toolbox's order (cell-major, then the level's A anchors)."""
    p = "detector.rpn_head."
    hidden = F.relu(F.conv2d(feature, sd[p + "rpn_conv.weight"], sd[p + "rpn_conv.bias"], padding=1))
    logits = F.conv2d(hidden, sd[p + "rpn_cls.weight"], sd[p + "rpn_cls.bias"])[0].permute(1, 2, 0).reshape(-1)
    deltas = F.conv2d(hidden, sd[p + "rpn_reg.weight"], sd[p + "rpn_reg.bias"])[0].permute(1, 2, 0).reshape(-1, 4)
    return logits, deltas


def toolbox_rpn(sd, pyramid, image_shape, strides, scales, nms_pre, max_per_img):
    """RPNHead._get_bboxes_single: per level the top ``nms_pre`` sigmoid scores; decode (stds 1),
    clip; drop boxes with w or h <= 0 (min_bbox_size 0); NMS 0.7 within each level (batched_nms on
    level ids); the top ``max_per_img``. (torchvision's nms for mmcv's: same IoU, same
    ``> threshold`` suppression.)"""
    scores, boxes, levels = [], [], []
    for level, feature in enumerate(pyramid):
        logits, deltas = toolbox_rpn_head(sd, feature)
        anchors = toolbox_anchors(*feature.shape[2:], strides[level], scales).to(feature.dtype)
        s, order = logits.sigmoid().sort(descending=True)
        order, s = order[:nms_pre], s[:nms_pre]
        scores.append(s)
        boxes.append(toolbox_decode(anchors[order], deltas[order], [1.0] * 4, image_shape))
        levels.append(torch.full((len(s),), level))
    scores, boxes, levels = torch.cat(scores), torch.cat(boxes), torch.cat(levels)
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores, levels = boxes[valid], scores[valid], levels[valid]
    return boxes[batched_nms(boxes, scores, levels, 0.7)[:max_per_img]]


def toolbox_bbox_head(sd, roi_feats, num_fcs=2):
    """ConvFCBBoxHead with ``num_fcs`` shared FCs: flatten, relu(shared_fcs.i) for each, then
    fc_cls, fc_reg."""
    p = "detector.roi_head.bbox_head."
    x = roi_feats.flatten(1)
    for i in range(num_fcs):
        x = F.relu(F.linear(x, sd[f"{p}shared_fcs.{i}.weight"], sd[f"{p}shared_fcs.{i}.bias"]))
    cls_score = F.linear(x, sd[p + "fc_cls.weight"], sd[p + "fc_cls.bias"])
    return cls_score, F.linear(x, sd[p + "fc_reg.weight"], sd[p + "fc_reg.bias"])


def toolbox_detections(proposals, cls_score, bbox_pred, image_shape, stds, score_thr):
    """BBoxHead.get_bboxes + multiclass_nms: softmax (background last), class-specific deltas
    decoded with ``stds`` and clipped, score > ``score_thr``, NMS 0.5 per class, 100 per image."""
    scores = cls_score.softmax(dim=1)[:, :-1]
    boxes = toolbox_decode(proposals, bbox_pred, stds, image_shape).view(len(proposals), -1, 4)
    keep = scores > score_thr
    boxes, scores, labels = boxes[keep], scores[keep], keep.nonzero()[:, 1]
    kept = batched_nms(boxes, scores, labels, 0.5)[:100]
    return boxes[kept], scores[kept], labels[kept]
