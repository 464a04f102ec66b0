"""Training and evaluation in Detectron2's DefaultTrainer idiom: :class:`VideoTrainer`, and what a
training loop does when reading its data fails."""

import json
import logging
import os
import time
import weakref

import detectron2.utils.comm as comm
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer, hooks

from .. import data
from ..checkpoint import VideoCheckpointer
from ..config import CHOICES
from ..config_checks import check_num_classes
from ..data import build_video_test_loader, build_video_train_loader
from ..evaluation import VideoPostprocessingEvaluator, VIDEvaluator, YTVISEvaluator, dataset_frame_subsets
from ..postprocessing import build_video_postprocessor
from .launch import ddp_on_cpu_without_device_ids

__all__ = [
    "FailureRecordingLoader",
    "PeriodicWriter",
    "TRAIN_MAPPERS",
    "VideoTrainer",
    "save_iterations_done",
    "trim_metrics",
]

logger = logging.getLogger(__name__)

# INPUT.TRAIN_MAPPER -> the mapper of the training frame groups (the class of that name in .data).
TRAIN_MAPPERS = {name: getattr(data, name) for name in CHOICES["INPUT.TRAIN_MAPPER"]}


class PeriodicWriter(hooks.PeriodicWriter):
    """Detectron2's ``PeriodicWriter`` (writes the metrics, e.g. the log line with the losses and
    the ETA, every ``period`` iterations and after the last one), which also writes after an
    iteration that ends ``seconds`` or more after its last write: a slow run logs its progress at
    least that often, not only every ``period`` iterations."""

    def __init__(self, writers, period=20, seconds=20.0):
        super().__init__(writers, period)
        self._seconds = seconds
        self._last_write = time.perf_counter()

    def before_train(self):
        self._last_write = time.perf_counter()

    def after_step(self):
        now = time.perf_counter()
        iteration = self.trainer.iter
        if (
            (iteration + 1) % self._period == 0
            or iteration == self.trainer.max_iter - 1
            or now - self._last_write >= self._seconds
        ):
            for writer in self._writers:
                writer.write()
            self._last_write = now


class FailureRecordingLoader:
    """A training loader that records whether reading its data failed (``failed``)."""

    def __init__(self, loader):
        self.loader = loader
        self.failed = False

    def __iter__(self):
        iterator = iter(self.loader)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except Exception:
                self.failed = True
                raise
            yield batch


def save_iterations_done(trainer, checkpointer, output_dir: str):
    """After reading the training data failed at ``trainer.iter``: save the iterations done as
    ``model_<last done>.pth`` (which ``--resume`` continues) and log what to do."""
    done = trainer.iter - 1  # the iteration whose data could not be read did not run
    hint = (
        "fix the data (tools/check_dataset.py lists the problems) or set DATALOADER.SKIP_BAD_FRAMES "
        "True, then continue with --resume"
    )
    if done < trainer.start_iter or not comm.is_main_process():
        logger.error(f"Reading the training data failed at iteration {trainer.iter}: {hint}")
        return
    trainer.iter = done
    name = f"model_{done:07d}"
    checkpointer.save(name, iteration=done)
    logger.error(
        f"Reading the training data failed at iteration {done + 1}; the {done + 1} iterations done are "
        f"saved in {os.path.join(output_dir, name)}.pth: {hint}"
    )


def trim_metrics(output_dir: str, start_iter: int) -> None:
    """Before training from ``start_iter``, keep in ``output_dir``/metrics.json the records of the
    iterations before it only (those of the checkpoint the run continues). The records of
    iterations that run again (done after the last checkpoint of an interrupted run, or by an
    earlier run when this one starts afresh) and lines cut short by a kill move to
    metrics.trimmed.json, with a warning. The file is rewritten in place: Detectron2's JSONWriter
    holds it open for appending."""
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(path):
        return
    with open(path, "r+") as f:
        lines = [line for line in f.read().splitlines(keepends=True) if line.strip()]
        iterations = [_iteration(line) for line in lines]
        kept = [line for line, i in zip(lines, iterations) if i is not None and i < start_iter]
        if len(kept) == len(lines):
            return
        trimmed = os.path.join(output_dir, "metrics.trimmed.json")
        with open(trimmed, "a") as out:
            out.writelines(
                line.rstrip("\n") + "\n" for line, i in zip(lines, iterations) if i is None or i >= start_iter
            )
        f.seek(0)
        f.writelines(kept)
        f.truncate()
    redone = [i for i in iterations if i is not None and i >= start_iter]
    moved = [f"the {len(redone)} records of iterations {min(redone)}-{max(redone)} (they run again)"] if redone else []
    moved += [f"{iterations.count(None)} damaged lines"] if None in iterations else []
    logger.warning(f"{path}: training starts at iteration {start_iter}: moved {' and '.join(moved)} to {trimmed}")


def _iteration(line: str):
    """The iteration of a metrics.json line, None for a damaged one."""
    try:
        iteration = json.loads(line)["iteration"]
    except (ValueError, KeyError, TypeError):
        return None
    return iteration if isinstance(iteration, int) else None


class VideoTrainer(DefaultTrainer):
    """DefaultTrainer with frame-group loaders (target + support frames, and a reference frame
    for MaskTrack R-CNN), the VID / YouTube-VIS evaluators and a :class:`VideoCheckpointer`:
    atomic checkpoints, resuming from the newest whole one, weights checked against the model
    (:meth:`resume_or_load`). metrics.json keeps the records of the iterations before the start
    only (:func:`trim_metrics`). When reading the training data fails, the iterations done are
    saved as a checkpoint before the error goes on. The class count of every dataset of
    DATASETS.TRAIN and DATASETS.TEST is checked against MODEL.ROI_HEADS.NUM_CLASSES before
    training (:func:`~..config_checks.check_num_classes`). The metrics are logged every 20
    iterations or 20 seconds (:class:`PeriodicWriter`)."""

    def __init__(self, cfg):
        with ddp_on_cpu_without_device_ids():
            super().__init__(cfg)  # reads DATASETS.TRAIN, checking their class counts
        # Before training, not at the first evaluation: a test set registered without its classes is read now.
        check_num_classes(cfg.MODEL.ROI_HEADS.NUM_CLASSES, cfg.DATASETS.TEST)

    def build_hooks(self):
        """DefaultTrainer's hooks, saving through a :class:`VideoCheckpointer` and writing the
        metrics with :class:`PeriodicWriter` (every 20 iterations or 20 seconds)."""
        # DefaultTrainer made its DetectionCheckpointer just before; the hooks save through ours.
        self.checkpointer = VideoCheckpointer(self.checkpointer.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        return [
            PeriodicWriter(h._writers, h._period) if type(h) is hooks.PeriodicWriter else h
            for h in super().build_hooks()
        ]

    def resume_or_load(self, resume=True, *, allow_partial_weights=False):
        """:meth:`DefaultTrainer.resume_or_load`, then the loaded weights are checked
        (:meth:`VideoCheckpointer.check_weights`): resuming needs every parameter; training from
        MODEL.WEIGHTS needs the parameters outside the backbone unless the file holds backbone
        parameters only (ImageNet-pretrained). ``allow_partial_weights`` turns refusals into
        warnings."""
        super().resume_or_load(resume=resume)
        self.checkpointer.check_weights(evaluating=False, allow_partial=allow_partial_weights)

    def train(self):
        if comm.is_main_process():
            trim_metrics(self.cfg.OUTPUT_DIR, self.start_iter)
        try:
            return super().train()
        except Exception:
            if getattr(self._trainer.data_loader, "failed", False):
                save_iterations_done(self, self.checkpointer, self.cfg.OUTPUT_DIR)
            raise

    @classmethod
    def build_train_loader(cls, cfg):
        """:func:`build_video_train_loader` with the mapper named by ``INPUT.TRAIN_MAPPER``."""
        if cfg.INPUT.TRAIN_MAPPER not in TRAIN_MAPPERS:
            raise ValueError(
                f"INPUT.TRAIN_MAPPER must be one of {sorted(TRAIN_MAPPERS)}, got {cfg.INPUT.TRAIN_MAPPER!r}"
            )
        return FailureRecordingLoader(
            build_video_train_loader(cfg, mapper=TRAIN_MAPPERS[cfg.INPUT.TRAIN_MAPPER](cfg, True))
        )

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_video_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """The evaluator of the dataset's ``evaluator_type`` metadata, as PointRend's
        train_net.py chooses: "vid" -> :class:`VIDEvaluator` (with the dataset's
        ``frame_subsets``, if any); "ytvis" -> :class:`YTVISEvaluator` (video mask AP; on a
        split without annotations it writes the server's results.json and submission.zip and
        returns {}). Each whole video's detections are post-processed first when
        ``VIDEO.POSTPROCESS`` is set."""
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        metadata = MetadataCatalog.get(dataset_name)
        evaluator_type = metadata.get("evaluator_type", None)
        if evaluator_type == "vid":
            evaluator = VIDEvaluator(dataset_name, output_folder, subsets=dataset_frame_subsets(dataset_name))
        elif evaluator_type == "ytvis":
            evaluator = YTVISEvaluator(dataset_name, output_folder)
        else:
            raise NotImplementedError(
                f"no evaluator for dataset '{dataset_name}' of evaluator_type {evaluator_type!r} "
                "(known: 'vid', 'ytvis')"
            )
        postprocess = build_video_postprocessor(cfg)
        return evaluator if postprocess is None else VideoPostprocessingEvaluator(evaluator, postprocess)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """:meth:`DefaultTrainer.test`; a dataset whose evaluator returns no scores (a
        YouTube-VIS split without public annotations) is named with where its results went."""
        results = super().test(cfg, model, evaluators)
        per_dataset = {cfg.DATASETS.TEST[0]: results} if len(cfg.DATASETS.TEST) == 1 else results
        for name, scores in per_dataset.items():
            if not scores and comm.is_main_process():
                folder = os.path.join(cfg.OUTPUT_DIR, "inference", name)
                logger.warning(
                    f"'{name}': no scores computed here (no annotations); the predictions are in "
                    f"{folder} (results.json, submission.zip for the YouTube-VIS evaluation server)"
                    if MetadataCatalog.get(name).get("evaluator_type", None) == "ytvis"
                    else f"'{name}': the evaluator returned no scores"
                )
        return results
