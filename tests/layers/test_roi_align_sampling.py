import pytest
import torch
from detectron2.layers import ROIAlign
from torchvision.ops import roi_align

from temporal_roi_align.layers import roi_align_sampling

STRIDE = 16


def edge_case_boxes(height, width, dtype):
    """Boxes (image coordinates, stride 16) on and across the map's borders, tiny, huge,
    degenerate, and sample coordinates exactly at -1 and 7 (the limits of a 7-pixel map)."""
    image_h, image_w = height * STRIDE, width * STRIDE
    return torch.tensor(
        [
            [0, 0, image_w, image_h],  # the whole map
            [-500, -400, image_w + 700, image_h + 300],  # beyond the image on all sides
            [image_w - 20, image_h - 10, image_w, image_h],  # bottom-right corner, on the edge
            [image_w - 8, image_h - 8, image_w + 60, image_h + 60],  # partly outside, bottom-right
            [-40, -30, 20, 25],  # partly outside, top-left
            [-16, -16, 0, 0],  # outside, touching the top-left corner
            [image_w + 40, 3, image_w + 80, 30],  # entirely right of the map
            [33.3, 47.1, 33.4, 47.15],  # tiny (a tenth of a pixel)
            [50, 60, 50, 60],  # zero size
            [70, 80, 40, 30],  # x1 < x0, y1 < y0
            [-20, -20, 92, 92],  # 2x2 samples at exactly -1 when not aligned (7x7 bins)
            [-12, -12, 100, 100],  # 2x2 samples at exactly -1 when aligned
            [4, 4, 116, 116],  # 2x2 samples at exactly 7 when not aligned (7x7 bins)
            [5.5, 7.25, image_w - 3.75, 40.5],  # wide and flat
        ],
        dtype=dtype,
    )


def random_boxes(num_boxes, height, width, generator, dtype=torch.float32):
    image = torch.tensor([width * STRIDE, height * STRIDE], dtype=dtype)
    corners = torch.rand(num_boxes, 2, generator=generator, dtype=dtype) * image * 1.2 - 0.1 * image
    sizes = torch.rand(num_boxes, 2, generator=generator, dtype=dtype) ** 2 * image * 1.3
    return torch.cat([corners, corners + sizes], dim=1)


def pooled_through_sampling(sampling, feature_map, output_size):
    """``P @ F`` reshaped as roi_align's ``[R, C, h, w]``."""
    cells = sampling.to_dense() @ feature_map.flatten(1).T
    return cells.view(-1, *output_size, feature_map.shape[0]).permute(0, 3, 1, 2)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 1, 2, 3])
@pytest.mark.parametrize(
    "map_size, output_size",
    [((7, 11), (7, 7)), ((5, 4), (2, 3)), ((1, 1), (3, 3)), ((1, 9), (1, 1)), ((13, 2), (4, 1))],
)
def test_equals_torchvision_roi_align(aligned, sampling_ratio, map_size, output_size):
    generator = torch.Generator().manual_seed(0)
    feature_map = torch.randn(5, *map_size, generator=generator)
    boxes = torch.cat([edge_case_boxes(*map_size, torch.float32), random_boxes(30, *map_size, generator)])
    sampling = roi_align_sampling(boxes, map_size, output_size, 1 / STRIDE, sampling_ratio, aligned)
    expected = roi_align(feature_map[None], [boxes], output_size, 1 / STRIDE, sampling_ratio, aligned)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(
        pooled_through_sampling(sampling, feature_map, output_size), expected, rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_equals_torchvision_roi_align_in_float64(aligned, sampling_ratio):
    generator = torch.Generator().manual_seed(1)
    feature_map = torch.randn(3, 6, 9, generator=generator, dtype=torch.float64)
    boxes = torch.cat([edge_case_boxes(6, 9, torch.float64), random_boxes(30, 6, 9, generator, torch.float64)])
    sampling = roi_align_sampling(boxes, (6, 9), (7, 7), 1 / STRIDE, sampling_ratio, aligned)
    assert sampling.weights.dtype == torch.float64
    expected = roi_align(feature_map[None], [boxes], (7, 7), 1 / STRIDE, sampling_ratio, aligned)
    torch.testing.assert_close(pooled_through_sampling(sampling, feature_map, (7, 7)), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pooler_type, aligned", [("ROIAlignV2", True), ("ROIAlign", False)])
@pytest.mark.parametrize("spatial_scale, map_size", [(1 / 8, (10, 13)), (1 / 32, (3, 4))])
def test_equals_detectron2_roi_align_layer(pooler_type, aligned, spatial_scale, map_size):
    """The layer ROIPooler uses for each pooler type (adaptive sampling, as in the paper's configs)."""
    generator = torch.Generator().manual_seed(2)
    feature_map = torch.randn(4, *map_size, generator=generator)
    boxes = random_boxes(20, *map_size, generator) * (spatial_scale * STRIDE) ** -1
    layer = ROIAlign((7, 7), spatial_scale, 0, aligned=aligned)
    expected = layer(feature_map[None], torch.cat([torch.zeros(20, 1), boxes], dim=1))
    sampling = roi_align_sampling(boxes, map_size, (7, 7), spatial_scale, 0, aligned)
    torch.testing.assert_close(pooled_through_sampling(sampling, feature_map, (7, 7)), expected, rtol=1e-6, atol=1e-6)


def test_sparse_structure():
    """Rows in (RoI, y, x) order; distinct locations per row, non-zero weights; an RoI
    entirely outside the map has empty rows; at most 16 taps per cell with 2x2 samples."""
    boxes = edge_case_boxes(7, 11, torch.float32)
    sampling = roi_align_sampling(boxes, (7, 11), (3, 2), 1 / STRIDE, 2, True)
    counts = sampling.offsets.diff()
    assert sampling.offsets[0] == 0 and len(counts) == len(boxes) * 6
    assert sampling.offsets[-1] == len(sampling.locations) == len(sampling.weights)
    assert (sampling.weights != 0).all() and counts.max() <= 16
    assert sampling.locations.min() >= 0 and sampling.locations.max() < 77
    for row in range(len(counts)):
        locations = sampling.locations[sampling.offsets[row] : sampling.offsets[row + 1]].tolist()
        assert len(set(locations)) == len(locations)
    assert (counts.view(len(boxes), 6)[6] == 0).all()  # entirely right of the map
    assert (counts.view(len(boxes), 6)[0] > 0).all()
    # Whole-map RoI, not clamped: the weights of each cell sum to 1.
    whole = sampling.rows(0, 6)
    torch.testing.assert_close(whole.to_dense().sum(dim=1), torch.ones(6))


def test_rows_slices_cells():
    boxes = random_boxes(5, 6, 8, torch.Generator().manual_seed(3))
    sampling = roi_align_sampling(boxes, (6, 8), (2, 2), 1 / STRIDE, 0, True)
    torch.testing.assert_close(sampling.rows(4, 13).to_dense(), sampling.to_dense()[4:13], rtol=0, atol=0)


def test_no_boxes():
    sampling = roi_align_sampling(torch.zeros(0, 4), (5, 6), (7, 7), 1 / STRIDE, 0, True)
    assert sampling.to_dense().shape == (0, 30) and sampling.offsets.tolist() == [0]


@pytest.mark.parametrize(
    "boxes, kwargs, message",
    [
        (torch.zeros(3, 5), {}, r"boxes must be \[R, 4\]"),
        (torch.zeros(3, 4, dtype=torch.int64), {}, "boxes must be floating point"),
        (torch.zeros(3, 4), {"map_size": (0, 5)}, "must be positive"),
        (torch.zeros(3, 4), {"sampling_ratio": -1}, "sampling_ratio must be >= 0"),
    ],
)
def test_bad_inputs(boxes, kwargs, message):
    arguments = {"map_size": (5, 6), "output_size": (7, 7), "spatial_scale": 0.5, "sampling_ratio": 2, "aligned": True}
    with pytest.raises(ValueError, match=message):
        roi_align_sampling(boxes, **{**arguments, **kwargs})
