"""VideoDatasetMapper, support selection, loaders and the video-ordered inference sampler."""

import os
import random
import shutil

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from detectron2.utils import comm

from temporal_roi_align.data import (
    SupportSelector,
    VideoDatasetMapper,
    VideoInferenceSampler,
    build_video_test_loader,
    build_video_train_loader,
    read_frame,
    sample_train_supports,
    select_test_supports,
)

from helpers.configs import small_cfg


def toy_dicts(name):
    return DatasetCatalog.get(name)


# --- support selection -------------------------------------------------------------------------


def test_train_supports_random_from_same_video():
    rng = np.random.RandomState(0)
    for _ in range(50):
        ids = sample_train_supports(5, range(20), 2, rng=rng)
        assert len(ids) == 2 and len(set(ids)) == 2 and 5 not in ids and all(0 <= i < 20 for i in ids)
    within = {i for _ in range(50) for i in sample_train_supports(5, range(20), 2, frame_range=2, rng=rng)}
    assert within <= {3, 4, 6, 7}
    assert sample_train_supports(0, range(1), 2, rng=rng) == [0, 0]  # 1-frame video / DET image
    assert sample_train_supports(0, range(2), 3, rng=rng) == [1, 1, 1]  # too short: repeats


def test_test_supports_uniform_over_whole_video():
    ids = select_test_supports(7, range(30), 14, "uniform")
    assert len(ids) == 14 and 7 not in ids and ids == sorted(ids)
    assert ids[0] == 0 and ids[-1] == 29 and max(np.diff(ids)) <= 4  # +1 where the target is skipped
    assert select_test_supports(0, range(30), 14, "uniform")[0] == 1
    assert select_test_supports(1, range(3), 4, "uniform") == [0, 0, 2, 2]  # short: repeats
    assert select_test_supports(0, range(1), 3, "uniform") == [0, 0, 0]
    assert select_test_supports(3, range(5), 0, "uniform") == []


def test_test_supports_stride_copies_ends():
    assert select_test_supports(10, range(30), 4, "stride", stride=3) == [4, 7, 13, 16]
    assert select_test_supports(1, range(30), 4, "stride", stride=2) == [
        0,
        0,
        3,
        5,
    ]  # first frame copied
    assert select_test_supports(29, range(30), 3, "stride") == [
        28,
        29,
        29,
    ]  # last frame (the target)
    assert select_test_supports(0, range(1), 2, "stride") == [0, 0]
    with pytest.raises(ValueError, match="unknown test support mode"):
        select_test_supports(0, range(3), 2, "random")


def test_test_supports_past_frames_only():
    assert select_test_supports(5, range(30), 3, "past", stride=2) == [3, 1, 0]
    assert select_test_supports(0, range(30), 2, "past") == [0, 0]
    assert SupportSelector("past", 3, stride=2).is_causal and not SupportSelector("uniform", 3).is_causal


def test_support_selector_from_config():
    train = SupportSelector.from_config(small_cfg(NUM_TRAIN=3, TRAIN_FRAME_RANGE=4), is_train=True)
    assert train == SupportSelector("random", 3, frame_range=4)
    test = SupportSelector.from_config(small_cfg(NUM_TEST=5, TEST_MODE="stride", TEST_STRIDE=2), is_train=False)
    assert test == SupportSelector("stride", 5, stride=2)
    assert test(10, range(30)) == [6, 8, 12, 14, 16]
    assert SupportSelector("uniform", 0)(3, range(10)) == []


def test_test_supports_uniform_with_target():
    # The converted toolbox checkpoints' test supports: 14 over the whole video, then the target.
    assert select_test_supports(3, range(27), 14, "uniform_with_target") == list(range(0, 27, 2)) + [3]
    # round(i * 19 / 13), Python's round: i = 5 gives 7.307 -> 7, i = 13 gives 19.
    ids = select_test_supports(0, range(20), 14, "uniform_with_target")
    assert ids == [round(i * 19 / 13) for i in range(14)] + [0]
    assert select_test_supports(0, range(1), 3, "uniform_with_target") == [0, 0, 0, 0]


# --- the mapper on the toy dataset -------------------------------------------------------------


def test_train_mapping_group(vid_toy_datasets_env):
    d = toy_dicts("toy_vid_train")[4]
    mapper = VideoDatasetMapper(small_cfg(NUM_TRAIN=3), is_train=True)
    out = mapper(d)
    for key in (
        "image",
        "instances",
        "height",
        "width",
        "file_name",
        "image_id",
        "video_id",
        "frame_id",
        "video_length",
    ):
        assert key in out
    assert out["image"].dtype == torch.uint8 and out["image"].shape[0] == 3
    assert min(out["image"].shape[1:]) == 64
    inst = out["instances"]
    assert inst.has("gt_boxes") and inst.has("gt_classes") and inst.gt_track_ids.dtype == torch.int64
    assert len(inst) == len(d["annotations"])
    assert "annotations" not in out and "degradation" in out
    assert len(out["supports"]) == 3
    for s in out["supports"]:
        assert set(s) == {"image", "file_name", "video_id", "frame_id"} and s["video_id"] == d["video_id"]
        assert s["frame_id"] != d["frame_id"] and s["image"].shape == out["image"].shape
        assert os.path.dirname(s["file_name"]) == os.path.dirname(d["file_name"])


def test_supports_get_the_targets_transforms(vid_toy_datasets_env):
    d = toy_dicts("toy_vid_train")[0]
    mapper = VideoDatasetMapper(
        is_train=True,
        augmentations=[T.ResizeShortestEdge(32, 100), T.RandomFlip(prob=1.0)],
        image_format="RGB",
        support_selector=SupportSelector("random", 1),
    )
    out = mapper(d)
    (s,) = out["supports"]
    raw = read_frame(s["file_name"], "RGB")
    expected = T.ResizeTransform(64, 80, 32, 40).apply_image(raw)[:, ::-1]
    assert torch.equal(s["image"], torch.as_tensor(np.ascontiguousarray(expected.transpose(2, 0, 1))))
    box = d["annotations"][0]["bbox"]
    assert out["instances"].gt_boxes.tensor[0].tolist() == pytest.approx(
        [40 - box[2] / 2, box[1] / 2, 40 - box[0] / 2, box[3] / 2]
    )


@pytest.mark.parametrize("mode, stride", [("uniform", 1), ("stride", 2)])
def test_test_mapping(vid_toy_datasets_env, mode, stride):
    d = toy_dicts("toy_vid_val")[3]
    out = VideoDatasetMapper(small_cfg(NUM_TEST=4, TEST_MODE=mode, TEST_STRIDE=stride), is_train=False)(d)
    assert "instances" not in out and "annotations" not in out
    expected = {"uniform": [0, 2, 5, 7], "stride": [0, 1, 5, 7]}[mode]
    assert [s["frame_id"] for s in out["supports"]] == expected
    assert all("instances" not in s for s in out["supports"])


def test_bad_config_values():
    with pytest.raises(ValueError, match="support mode must be one of"):
        VideoDatasetMapper(small_cfg(TEST_MODE="all"), is_train=False)
    with pytest.raises(ValueError, match="need num >= 0 supports and stride >= 1"):
        VideoDatasetMapper(small_cfg(TEST_MODE="stride", TEST_STRIDE=0), is_train=False)
    cfg = small_cfg()
    cfg.INPUT.RESIZE_STYLE = "other"
    with pytest.raises(ValueError, match="RESIZE_STYLE"):
        VideoDatasetMapper(cfg, is_train=False)


@pytest.mark.parametrize("style", ["mmtrack", "mmcv"])  # "mmcv": the old name, still accepted
def test_mmtrack_resize_style_at_test(vid_toy_datasets_env, style):
    cfg = small_cfg(NUM_TEST=2, TEST_MODE="uniform_with_target")
    cfg.INPUT.RESIZE_STYLE = style
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 100, 110  # 64x80 -> factor 1.375: 88x110
    out = VideoDatasetMapper(cfg, is_train=False)(toy_dicts("toy_vid_val")[2])
    assert out["image"].shape == (3, 88, 110)
    assert [s["frame_id"] for s in out["supports"]] == [0, 7, 2]
    assert all(s["image"].shape == (3, 88, 110) for s in out["supports"])


# --- bad images --------------------------------------------------------------------------------


@pytest.fixture
def broken_video(vid_toy_root, tmp_path, monkeypatch):
    """A copy of the toy dataset whose files the test may break."""
    root = shutil.copytree(vid_toy_root, tmp_path / "toy_vid")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    return root


def test_missing_target_image(broken_video):
    d = toy_dicts("toy_vid_val")[0]
    os.remove(d["file_name"])
    with pytest.raises(FileNotFoundError, match="image file does not exist") as e:
        VideoDatasetMapper(small_cfg(), is_train=False)(d)
    assert d["file_name"] in str(e.value)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_unreadable_support_image(broken_video, damage):
    d = toy_dicts("toy_vid_val")[0]
    bad = d["file_name"].replace("000000.JPEG", "000004.JPEG")
    data = open(bad, "rb").read()
    with open(bad, "wb") as f:
        f.write({"truncate": data[: len(data) // 2], "garbage": b"not a jpeg" * 10, "empty": b""}[damage])
    with pytest.raises(OSError, match="cannot read image") as e:
        VideoDatasetMapper(small_cfg(NUM_TEST=7), is_train=False)(d)
    assert bad in str(e.value)


def test_support_of_another_size(broken_video):
    d = toy_dicts("toy_vid_val")[0]
    bad = d["file_name"].replace("000000.JPEG", "000007.JPEG")
    from PIL import Image

    Image.new("RGB", (40, 30)).save(bad, "JPEG")
    with pytest.raises(ValueError, match="frame is 40x30 but frame .* of the same video is") as e:
        VideoDatasetMapper(small_cfg(NUM_TEST=7), is_train=False)(d)
    assert bad in str(e.value)


def test_error_in_loader_worker_names_file(broken_video):
    dicts = toy_dicts("toy_vid_val")
    os.remove(dicts[0]["file_name"])
    loader = build_video_test_loader(dicts[:1], mapper=VideoDatasetMapper(small_cfg(), is_train=False), num_workers=1)
    batches = iter(loader)
    with pytest.raises(FileNotFoundError) as e:
        next(batches)
    del batches  # stops the worker now
    assert dicts[0]["file_name"] in str(e.value)


def test_dict_without_video_fields():
    with pytest.raises(KeyError, match="x.jpg: dataset dict lacks the video fields"):
        VideoDatasetMapper(small_cfg(), is_train=True)({"file_name": "x.jpg", "height": 4, "width": 4})


# --- loaders and sampler -----------------------------------------------------------------------


def test_train_loader(vid_toy_datasets_env):
    cfg = small_cfg()
    cfg.DATASETS.TRAIN = ("toy_vid_train",)
    batch = next(iter(build_video_train_loader(cfg)))
    assert len(batch) == 2
    assert all(len(x["supports"]) == 2 and x["instances"].has("gt_track_ids") for x in batch)


def test_test_loader_visits_videos_in_order(vid_toy_datasets_env):
    loader = build_video_test_loader(small_cfg(NUM_TEST=2), "toy_vid_val")
    seen = [(x["video_id"], x["frame_id"]) for (x,) in loader]
    assert seen == [(f"VID/val/toy_val_{v:04d}", t) for v in range(2) for t in range(8)]
    shuffled = list(toy_dicts("toy_vid_val"))
    random.Random(0).shuffle(shuffled)
    order = [(shuffled[i]["video_id"], shuffled[i]["frame_id"]) for i in VideoInferenceSampler(shuffled)]
    first_video = shuffled[0]["video_id"]  # videos come in order of first appearance
    assert order == sorted(order, key=lambda vf: (vf[0] != first_video, vf))


def test_inference_sampler_keeps_videos_whole(monkeypatch):
    dicts = [{"video_id": v, "frame_id": f} for v, n in enumerate([5, 30, 2, 2, 20, 1]) for f in range(n)]
    monkeypatch.setattr(comm, "get_world_size", lambda: 3)
    shards = []
    for rank in range(3):
        monkeypatch.setattr(comm, "get_rank", lambda rank=rank: rank)
        shards.append(list(VideoInferenceSampler(dicts)))
    assert sorted(i for s in shards for i in s) == list(range(len(dicts)))
    assert all(
        {dicts[i]["video_id"] for i in s}.isdisjoint({dicts[i]["video_id"] for i in t})
        for s in shards
        for t in shards
        if s is not t
    )
    assert all(shards)


def test_test_loader_keeps_videos_whole_whatever_detectron2_proposes(vid_toy_datasets_env, monkeypatch):
    """Detectron2 after 0.6 returns its InferenceSampler from _test_loader_from_config, which
    may split a video between processes; the video loader always uses its own sampler."""
    from detectron2.data.samplers import InferenceSampler

    import temporal_roi_align.data.build as build

    original = build._test_loader_from_config

    def upstream_like(cfg, dataset_name, mapper=None):
        ret = original(cfg, dataset_name, mapper)
        ret["sampler"] = InferenceSampler(len(ret["dataset"]))
        return ret

    monkeypatch.setattr(build, "_test_loader_from_config", upstream_like)
    loader = build_video_test_loader(small_cfg(NUM_TEST=1), "toy_vid_val")
    assert isinstance(loader.batch_sampler.sampler, VideoInferenceSampler)
