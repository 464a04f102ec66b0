"""Most Similar RoI Align's test cases: a reference written from Eq. 2-4 (a loop over RoI cells),
RoIs of every kind over a map, and the odd shapes both the PyTorch and the compiled paths are
checked on."""

import torch
from torchvision.ops import roi_align

from temporal_roi_align.layers import most_similar_roi_align_from_map


def reference_most_similar_roi_align(roi_feats, support_feats, k):
    """Eq. 2-4 cell by cell: cosine similarity to every support location, top k, softmax,
    weighted sum of the un-normalised support vectors."""
    num_rois, _, roi_h, roi_w = roi_feats.shape
    num_supports, _, height, width = support_feats.shape
    per_support = []
    for t in range(num_supports):
        per_roi = []
        for r in range(num_rois):
            rows = []
            for y in range(roi_h):
                row = []
                for x in range(roi_w):
                    query = roi_feats[r, :, y, x]
                    query_hat = query / query.norm()
                    locations = [(i, j) for i in range(height) for j in range(width)]
                    scores = []
                    for i, j in locations:
                        support = support_feats[t, :, i, j]
                        scores.append((query_hat * (support / support.norm())).sum())
                    ranked = sorted(range(len(locations)), key=lambda p: -scores[p].item())[:k]
                    exps = [torch.exp(scores[p]) for p in ranked]
                    total = sum(exps)
                    row.append(
                        sum(
                            e / total * support_feats[t, :, locations[p][0], locations[p][1]]
                            for e, p in zip(exps, ranked)
                        )
                    )
                rows.append(torch.stack(row, dim=-1))  # [C, w]
            per_roi.append(torch.stack(rows, dim=-2))  # [C, h, w]
        per_support.append(torch.stack(per_roi))
    return torch.stack(per_support)


def pooled_rois(target_map, boxes, output_size, spatial_scale, sampling_ratio, aligned):
    return roi_align(target_map[None], [boxes], output_size, spatial_scale, sampling_ratio, aligned)


def varied_boxes(num_boxes, image_h, image_w, generator, dtype=torch.float32):
    """Random boxes of all sizes, some across the image border, plus the whole image, a box on
    the bottom-right edge, a tiny one, one mostly outside the image and one outside."""
    image = torch.tensor([image_w, image_h], dtype=dtype)
    corners = torch.rand(num_boxes, 2, generator=generator, dtype=dtype) * image * 1.1 - 0.05 * image
    sizes = torch.rand(num_boxes, 2, generator=generator, dtype=dtype) ** 2 * image
    special = torch.tensor(
        [
            [0, 0, image_w, image_h],
            [image_w - 9, image_h - 7, image_w, image_h],
            [3.1, 4.2, 3.3, 4.5],
            [-image_w, -image_h, 0.3 * image_w, 0.3 * image_h],  # mostly outside: some cells all zero
            [-3 * image_w, -image_h, -2 * image_w, 0],  # outside: all cells zero
        ],
        dtype=dtype,
    )
    return torch.cat([special, torch.cat([corners, corners + sizes], dim=1)])


def from_map(method, roi_feats, target_map, boxes, support_feats, k, pooling, **kwargs):
    return most_similar_roi_align_from_map(
        roi_feats, target_map, boxes, support_feats, k, **pooling, method=method, **kwargs
    )


def gram_case_inputs(channels, map_hw, support_hw, num_supports, num_rois, roi_hw, scale, ratio, aligned, dtype):
    """One GRAM_CASES row's inputs, random (seed 7): the RoI features pooled from a target map,
    the map, the boxes, the support maps and the pooling arguments."""
    generator = torch.Generator().manual_seed(7)
    target_map = torch.randn(channels, *map_hw, generator=generator, dtype=dtype)
    support_feats = torch.randn(num_supports, channels, *support_hw, generator=generator, dtype=dtype)
    boxes = varied_boxes(num_rois, map_hw[0] / scale, map_hw[1] / scale, generator, dtype)
    pooling = {"spatial_scale": scale, "sampling_ratio": ratio, "aligned": aligned}
    return pooled_rois(target_map, boxes, roi_hw, **pooling), target_map, boxes, support_feats, pooling


GRAM_CASES = [
    # channels, target map, support maps, T, R, output size, k, spatial scale, sampling ratio, aligned, chunk
    (6, (5, 7), (5, 7), 2, 6, (3, 3), 3, 1 / 8, 2, True, 2048),
    (5, (4, 9), (6, 3), 1, 5, (2, 3), 2, 1 / 16, 0, True, 7),  # T = 1, other support size, chunks
    (4, (7, 5), (7, 5), 3, 4, (1, 1), 4, 1 / 8, 2, False, 2048),  # one-cell RoIs, not aligned
    (7, (3, 3), (4, 4), 2, 5, (7, 7), 16, 1 / 32, 0, False, 60),  # k = H * W, RoIs larger than the map
    (3, (13, 17), (11, 19), 2, 4, (2, 2), 5, 1 / 4, 1, True, 2048),  # two-stage top-k, padding
]
