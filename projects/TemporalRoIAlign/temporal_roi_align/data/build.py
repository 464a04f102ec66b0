"""Train/test loaders of frame groups, with detectron2's ``build_detection_*_loader`` conventions."""

from detectron2.config import configurable
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.data.build import _test_loader_from_config, _train_loader_from_config

from .dataset_mapper import VideoDatasetMapper
from .samplers import VideoInferenceSampler

__all__ = ["build_video_train_loader", "build_video_test_loader"]


def _video_train_loader_from_config(cfg, mapper=None, *, dataset=None, sampler=None):
    if mapper is None:
        mapper = VideoDatasetMapper(cfg, True)
    return _train_loader_from_config(cfg, mapper, dataset=dataset, sampler=sampler)


@configurable(from_config=_video_train_loader_from_config)
def build_video_train_loader(
    dataset,
    *,
    mapper,
    sampler=None,
    total_batch_size,
    aspect_ratio_grouping=True,
    num_workers=0,
    collate_fn=None
):
    """:func:`build_detection_train_loader` with :class:`VideoDatasetMapper` as the default
    mapper: each element of a batch is a target frame with its ``"supports"``. Datasets and
    sampler come from ``cfg.DATASETS.TRAIN`` and ``cfg.DATALOADER`` as in detectron2."""
    return build_detection_train_loader(
        dataset,
        mapper=mapper,
        sampler=sampler,
        total_batch_size=total_batch_size,
        aspect_ratio_grouping=aspect_ratio_grouping,
        num_workers=num_workers,
        collate_fn=collate_fn,
    )


def _video_test_loader_from_config(cfg, dataset_name, mapper=None):
    if mapper is None:
        mapper = VideoDatasetMapper(cfg, False)
    ret = _test_loader_from_config(cfg, dataset_name, mapper)
    # Detectron2 after 0.6 puts its InferenceSampler here, which may split a video between processes.
    ret["sampler"] = VideoInferenceSampler(ret["dataset"])
    return ret


@configurable(from_config=_video_test_loader_from_config)
def build_video_test_loader(dataset, *, mapper, sampler=None, num_workers=0, collate_fn=None):
    """:func:`build_detection_test_loader` (batch size 1) with :class:`VideoDatasetMapper` as the
    default mapper and :class:`VideoInferenceSampler` as the default sampler: frames come video
    by video, each video's frames in order, each video on one process."""
    if sampler is None:
        sampler = VideoInferenceSampler(dataset)
    return build_detection_test_loader(
        dataset, mapper=mapper, sampler=sampler, num_workers=num_workers, collate_fn=collate_fn
    )
