"""FrameBatch: where each target's supports and reference frame lie in the one backbone batch."""

import torch
from detectron2.structures import ImageList

from temporal_roi_align.modeling.frame_group import FrameBatch


def numbered(name):
    """A frame whose image is filled with a number naming it (targets 0.., supports 10*(t+1)+j, references 100+t)."""
    return {"image": torch.full((1, 2, 3), float(name))}


def stack(frames):
    return ImageList.from_tensors([f["image"] for f in frames])


def names(tensor):
    return tensor[:, 0, 0, 0].long().tolist()


def build(num_supports, with_references):
    targets = [numbered(t) for t in range(len(num_supports))]
    for t, x in enumerate(targets):
        x["reference"] = numbered(100 + t)
    supports = [[numbered(10 * (t + 1) + j) for j in range(count)] for t, count in enumerate(num_supports)]
    return FrameBatch.stack(targets, supports, with_references, stack)


def test_each_kind_of_frame_is_found_where_the_batch_put_it():
    for with_references in (False, True):
        batch = build([2, 0, 3], with_references)
        maps = {"f": batch.images.tensor}
        assert names(batch.images_of(batch.targets).tensor) == [0, 1, 2]
        assert names(batch.maps_of(maps, batch.supports)["f"]) == [10, 11, 30, 31, 32]
        assert names(batch.maps_of(maps, batch.references)["f"]) == ([100, 101, 102] if with_references else [])
        assert len(batch.images) == 8 + 3 * with_references


def test_support_frames_split_the_supports_per_target():
    batch = build([2, 0, 3], True)
    support_maps = batch.maps_of({"f": batch.images.tensor}, batch.supports)
    proposals = [f"p{name}" for name in names(support_maps["f"])]
    supports = batch.support_frames(support_maps, proposals)
    assert [names(f["f"]) for f in supports.features] == [[10, 11], [], [30, 31, 32]]
    assert supports.proposals == [["p10", "p11"], [], ["p30", "p31", "p32"]]
    assert batch.support_frames(support_maps).proposals is None
