"""The support rules of FGFA and DFF (data.support_frames): "bilateral" and "random_with_target"
(training, mmtrack's "bilateral_uniform" and "uniform" samplers), "key_frame" (DFF's test rule)."""

import numpy as np
import pytest
from detectron2.config import get_cfg

from temporal_roi_align.config import add_video_config
from temporal_roi_align.data.support_frames import (
    SupportSelector,
    sample_bilateral_supports,
    sample_train_supports,
    select_test_supports,
)


def cfg_with(**support):
    cfg = get_cfg()
    add_video_config(cfg)
    for key, value in support.items():
        setattr(cfg.INPUT.SUPPORT, key, value)
    return cfg


def test_bilateral_draws_one_frame_on_each_side_within_range():
    rng = np.random.RandomState(0)
    seen = set()
    for _ in range(200):
        before, after = sample_bilateral_supports(20, range(40), 2, frame_range=9, rng=rng)
        assert 11 <= before <= 19 and 21 <= after <= 29
        seen |= {before, after}
    assert seen == set(range(11, 20)) | set(range(21, 30)), "every frame in range can be drawn"
    for _ in range(50):  # 4 supports: 2 distinct frames on each side
        ids = sample_bilateral_supports(5, range(40), 4, frame_range=3, rng=rng)
        assert ids == sorted(ids) and len(set(ids)) == 4
        assert sum(i < 5 for i in ids) == 2 and all(2 <= i <= 8 and i != 5 for i in ids)
    # -1: anywhere in the video.
    anywhere = {i for _ in range(200) for i in sample_bilateral_supports(20, range(40), 2, rng=rng)}
    assert anywhere == set(range(40)) - {20}


def test_bilateral_at_video_ends_and_on_still_images():
    rng = np.random.RandomState(1)
    # mmtrack draws min(num / 2, candidates) on each side: the first frame gets a later one only.
    for _ in range(20):
        (after,) = sample_bilateral_supports(0, range(30), 2, frame_range=9, rng=rng)
        assert 1 <= after <= 9
        (before,) = sample_bilateral_supports(29, range(30), 2, frame_range=9, rng=rng)
        assert 20 <= before <= 28
    assert sorted(sample_bilateral_supports(1, range(3), 4, rng=rng)) == [0, 2]
    # A 1-frame video (a DET image): copies of itself, as mmtrack gives DET images.
    assert sample_bilateral_supports(0, range(1), 2, frame_range=9, rng=rng) == [0, 0]
    with pytest.raises(ValueError, match="as many frames before as after"):
        sample_bilateral_supports(5, range(10), 3)


def test_random_with_target_includes_the_target():
    rng = np.random.RandomState(2)
    drawn = [sample_train_supports(10, range(30), 1, 9, rng, include_target=True)[0] for _ in range(400)]
    assert set(drawn) == set(range(1, 20)), "the 19 frames of [t-9, t+9], the target among them"
    without = {sample_train_supports(10, range(30), 1, 9, rng)[0] for _ in range(400)}
    assert 10 not in without and without == set(range(1, 20)) - {10}
    # A DET image: the image itself (mmtrack's frame_range 0 gives a copy as well).
    assert sample_train_supports(0, range(1), 1, 9, rng, include_target=True) == [0]


def test_key_frame_rule():
    frames = range(23)
    keys = [select_test_supports(t, frames, 1, "key_frame", stride=10) for t in frames]
    assert keys == [[0]] * 10 + [[10]] * 10 + [[20]] * 3
    assert select_test_supports(7, frames, 1, "key_frame", stride=1) == [7]  # every frame a key frame
    # Positions, not frame numbers: a video whose frames are numbered from 100.
    assert select_test_supports(113, range(100, 120), 1, "key_frame", stride=5) == [110]
    with pytest.raises(ValueError, match="gives one frame"):
        select_test_supports(3, frames, 2, "key_frame", stride=10)


def test_selectors_from_config():
    fgfa_train = SupportSelector.from_config(cfg_with(TRAIN_MODE="bilateral", NUM_TRAIN=2, TRAIN_FRAME_RANGE=9), True)
    assert fgfa_train == SupportSelector("bilateral", 2, frame_range=9)
    assert len(fgfa_train(5, range(20), rng=np.random.RandomState(0))) == 2
    dff_train = SupportSelector.from_config(
        cfg_with(TRAIN_MODE="random_with_target", NUM_TRAIN=1, TRAIN_FRAME_RANGE=9), True
    )
    assert dff_train == SupportSelector("random_with_target", 1, frame_range=9)
    draws = {dff_train(3, range(6), rng=np.random.RandomState(i))[0] for i in range(60)}
    assert draws == set(range(6))
    cfg = cfg_with(TEST_MODE="key_frame", NUM_TEST=1, TEST_STRIDE=3)
    cfg.VIDEO.KEY_FRAME_INTERVAL = 4
    dff_test = SupportSelector.from_config(cfg, False)
    assert dff_test == SupportSelector("key_frame", 1, stride=4)  # VIDEO.KEY_FRAME_INTERVAL, not TEST_STRIDE
    assert dff_test(6, range(10)) == [4] and dff_test.is_causal
    # FGFA's test rule is "stride" (mmtrack's frame_range [-15, 15], stride 1): t-15 .. t+15 clamped.
    fgfa_test = SupportSelector.from_config(cfg_with(TEST_MODE="stride", NUM_TEST=30, TEST_STRIDE=1), False)
    assert fgfa_test(3, range(50)) == [0] * 13 + [1, 2] + list(range(4, 19))
    assert not fgfa_test.is_causal and not fgfa_train.is_causal


def test_bad_rules():
    with pytest.raises(ValueError, match="TRAIN_MODE must be one of"):
        SupportSelector.from_config(cfg_with(TRAIN_MODE="uniform"), True)
    with pytest.raises(ValueError, match="even number of supports"):
        SupportSelector("bilateral", 3)
    with pytest.raises(ValueError, match="one support"):
        SupportSelector.from_config(cfg_with(TEST_MODE="key_frame", NUM_TEST=14), False)
