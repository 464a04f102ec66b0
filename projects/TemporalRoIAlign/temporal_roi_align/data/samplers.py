from collections import OrderedDict
from typing import Sequence

from detectron2.utils import comm
from torch.utils.data import Sampler

__all__ = ["VideoInferenceSampler", "video_order"]


def video_order(dataset: Sequence[dict]):
    """Dataset indices grouped by video (videos in order of first appearance), each video's
    frames in ``frame_id`` order. Returns a list of index lists, one per video."""
    videos = OrderedDict()
    for index in range(len(dataset)):
        d = dataset[index]
        videos.setdefault(d["video_id"], []).append((d["frame_id"], index))
    return [[i for _, i in sorted(frames)] for frames in videos.values()]


class VideoInferenceSampler(Sampler):
    """Like detectron2's :class:`InferenceSampler` (every sample exactly once across all
    processes), but visits each video's frames in sequence and never splits a video between
    processes, so a model can reuse the features of a video's frames from one target to the next.
    Videos are split into contiguous runs of about the same number of frames per process."""

    def __init__(self, dataset: Sequence[dict]):
        """
        Args:
            dataset: dataset dicts (a list or a detectron2 ``DatasetFromList``) with ``video_id``
                and ``frame_id``.
        """
        self._videos = video_order(dataset)
        total = sum(len(v) for v in self._videos)
        if total == 0:
            raise ValueError("VideoInferenceSampler needs a non-empty dataset")
        rank, world_size = comm.get_rank(), comm.get_world_size()
        self._local_indices, start = [], 0
        for frames in self._videos:
            # The process whose share of frames contains the video's middle frame takes it.
            if min(world_size - 1, (2 * start + len(frames)) * world_size // (2 * total)) == rank:
                self._local_indices.extend(frames)
            start += len(frames)

    def __iter__(self):
        yield from self._local_indices

    def __len__(self):
        return len(self._local_indices)
