"""Train/test loaders of frame groups, with detectron2's ``build_detection_*_loader`` conventions."""

import random

import torch.utils.data as torchdata
from detectron2.config import configurable
from detectron2.data import DatasetFromList, build_detection_test_loader, build_detection_train_loader
from detectron2.data.build import _test_loader_from_config, _train_loader_from_config

from ..config_checks import check_num_classes
from .dataset_mapper import VideoDatasetMapper
from .samplers import VideoInferenceSampler

__all__ = ["SkippingMapDataset", "build_video_train_loader", "build_video_test_loader"]


class SkippingMapDataset(torchdata.Dataset):
    """``map_func`` over a map-style dataset, where ``map_func`` may return None to skip an
    element (see ``DATALOADER.SKIP_BAD_FRAMES``): another element, drawn at random among those
    not skipped yet, is mapped in its place. Detectron2's ``MapDataset`` means to do the same,
    but its draw fails on Python >= 3.11 (``random.sample`` of a set)."""

    def __init__(self, dataset, map_func):
        self._dataset = dataset
        self._map_func = map_func
        self._skipped = set()
        self._rng = random.Random(42)

    def __len__(self):
        return len(self._dataset)

    def __getitem__(self, index):
        index = int(index)
        while True:
            data = self._map_func(self._dataset[index])
            if data is not None:
                return data
            self._skipped.add(index)
            if len(self._skipped) == len(self._dataset):
                raise RuntimeError(f"all {len(self._dataset)} elements of the training set were skipped")
            while index in self._skipped:
                index = self._rng.randrange(len(self._dataset))


def _video_train_loader_from_config(cfg, mapper=None, *, dataset=None, sampler=None):
    if mapper is None:
        mapper = VideoDatasetMapper(cfg, True)
    ret = _train_loader_from_config(cfg, mapper, dataset=dataset, sampler=sampler)
    if dataset is None:  # read from DATASETS.TRAIN just now
        check_num_classes(cfg.MODEL.ROI_HEADS.NUM_CLASSES, cfg.DATASETS.TRAIN)
    return ret


@configurable(from_config=_video_train_loader_from_config)
def build_video_train_loader(
    dataset, *, mapper, sampler=None, total_batch_size, aspect_ratio_grouping=True, num_workers=0, collate_fn=None
):
    """:func:`build_detection_train_loader` with :class:`VideoDatasetMapper` as the default
    mapper: each element of a batch is a target frame with its ``"supports"``. Datasets and
    sampler come from ``cfg.DATASETS.TRAIN`` and ``cfg.DATALOADER`` as in detectron2, the
    datasets' class counts checked against MODEL.ROI_HEADS.NUM_CLASSES once read
    (:func:`~..config_checks.check_num_classes`). A list or map-style dataset is mapped by
    :class:`SkippingMapDataset`."""
    if mapper is not None and not isinstance(dataset, torchdata.IterableDataset):
        if isinstance(dataset, list):
            dataset = DatasetFromList(dataset, copy=False)
        dataset, mapper = SkippingMapDataset(dataset, mapper), None
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
    names = [dataset_name] if isinstance(dataset_name, str) else dataset_name
    check_num_classes(cfg.MODEL.ROI_HEADS.NUM_CLASSES, names)
    # Detectron2 after 0.6 puts its InferenceSampler here, which may split a video between processes.
    ret["sampler"] = VideoInferenceSampler(ret["dataset"])
    return ret


@configurable(from_config=_video_test_loader_from_config)
def build_video_test_loader(dataset, *, mapper, sampler=None, num_workers=0, collate_fn=None):
    """:func:`build_detection_test_loader` (batch size 1) with :class:`VideoDatasetMapper` as the
    default mapper and :class:`VideoInferenceSampler` as the default sampler: frames come video
    by video, each video's frames in order, each video on one process. From a config, the
    dataset's class count is checked against MODEL.ROI_HEADS.NUM_CLASSES once read."""
    if sampler is None:
        sampler = VideoInferenceSampler(dataset)
    return build_detection_test_loader(
        dataset, mapper=mapper, sampler=sampler, num_workers=num_workers, collate_fn=collate_fn
    )
