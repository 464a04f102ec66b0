"""The checkpointer of training and evaluation: Detectron2's :class:`DetectionCheckpointer` that
writes atomically, resumes from the newest whole checkpoint and refuses weights that do not fit
the model (docs/safeguards.md)."""

import logging
import os
import re
import zipfile
from collections import Counter
from typing import List, Optional, Sequence, Tuple

from detectron2.checkpoint import DetectionCheckpointer
from fvcore.common.checkpoint import _filter_reused_missing_keys

from ..utils import NO_SPACE, atomic_write

__all__ = ["CheckpointError", "VideoCheckpointer", "checkpoint_problem", "weights_problems"]

logger = logging.getLogger(__name__)

# Parameters of the feature extractor, which ImageNet-pretrained weights provide alone.
BACKBONE_PREFIX = "backbone."
_NUMBERED = re.compile(r"(?P<prefix>.+)_(?P<iteration>\d+|final)\.pth")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or whose weights do not fit the model."""


def checkpoint_problem(path: str) -> Optional[str]:
    """Why the file at ``path`` is not a whole checkpoint written by ``torch.save``, or None.

    Reads the zip archive's directory at the end of the file and the small ``data.pkl`` entry
    (checking its CRC), not the tensors: a file cut short (a copy or a write interrupted) has
    lost its end. Files of the legacy, non-zip format are refused (this project writes none).
    """
    if not os.path.isfile(path):
        return "does not exist"
    if os.path.getsize(path) == 0:
        return "is empty"
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    if not is_zip:
        return "is not a checkpoint in torch.save's zip format"
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                return "is a zip archive without the data.pkl of a torch.save checkpoint"
            archive.read(pickles[0])
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return f"is truncated or damaged ({e})"
    return None


def weights_problems(
    model_keys: Sequence[str],
    missing: Sequence[str],
    unexpected: Sequence[str],
    incorrect_shapes: Sequence[Tuple[str, tuple, tuple]],
    *,
    complete: bool,
) -> List[str]:
    """What makes loaded weights unfit, one message each (empty: they fit).

    Args:
        model_keys: the model's state_dict keys.
        missing, unexpected, incorrect_shapes: as the checkpointer's load reports them.
        complete: every parameter must come from the checkpoint and every checkpoint tensor
            must be used (evaluation, resuming). Otherwise (training from pretrained weights),
            a checkpoint of backbone parameters only (ImageNet-pretrained) may leave the rest of
            the model to its initialization, while a checkpoint holding other parameters (a
            detector) must provide all parameters outside the backbone.
    """
    problems = []
    in_checkpoint = set(model_keys) - set(missing)
    if not in_checkpoint:
        return [f"it holds none of the model's {len(model_keys)} parameters and buffers (another architecture?)"]
    backbone_only = all(k.startswith(BACKBONE_PREFIX) for k in in_checkpoint)
    if complete:
        must_have = list(missing)
    elif backbone_only:
        must_have = []
    else:
        must_have = [k for k in missing if not k.startswith(BACKBONE_PREFIX)]
    if must_have:
        where = "" if complete else " outside the backbone"
        problems.append(f"{len(must_have)} parameters{where} are missing: {_modules(must_have)}")
    if complete and unexpected:
        problems.append(f"{len(unexpected)} of its tensors are not in the model: {_modules(unexpected)}")
    for key, in_ckpt, in_model in incorrect_shapes:
        message = f"{key} has shape {tuple(in_ckpt)} there, {tuple(in_model)} in the model"
        if key.endswith("box_predictor.cls_score.weight") or key.endswith("box_predictor.cls_score.bias"):
            message += (
                f": {in_ckpt[0] - 1} classes in the checkpoint, {in_model[0] - 1} in the model "
                "(MODEL.ROI_HEADS.NUM_CLASSES)"
            )
        problems.append(message)
    return problems


def _modules(keys: Sequence[str], shown: int = 8) -> str:
    """Keys grouped by module, e.g. ``roi_heads.box_pooler.aggregation (12)``."""
    counts = Counter(k.rsplit(".", 1)[0] if "." in k else k for k in keys)
    listed = ", ".join(f"{module} ({n})" for module, n in counts.most_common(shown))
    return listed + (f", ... ({len(counts) - shown} more modules)" if len(counts) > shown else "")


class _AtomicLocalWrites:
    """A path manager whose whole-file writes to local paths go through :func:`atomic_write`;
    everything else is the wrapped path manager's."""

    def __init__(self, path_manager):
        self._path_manager = path_manager

    def open(self, path, mode="r", **kwargs):
        if mode in ("w", "wb") and "://" not in path:
            return atomic_write(path, mode)
        return self._path_manager.open(path, mode, **kwargs)

    def __getattr__(self, name):
        return getattr(self._path_manager, name)


class VideoCheckpointer(DetectionCheckpointer):
    """:class:`DetectionCheckpointer` for long runs on big datasets:

    * checkpoints and ``last_checkpoint`` are written atomically: an interrupted save leaves the
      previous files as they were, never a truncated ``model_final.pth``; a save that finds no
      room on the disk says so and which checkpoint ``--resume`` continues from;
    * resuming checks the checkpoint ``last_checkpoint`` names (:func:`checkpoint_problem`) and,
      when it is not whole, falls back to the newest whole ``<prefix>_<iteration>.pth`` before it,
      with a warning; a missing or unreadable file is a :class:`CheckpointError` naming it;
    * :meth:`check_weights` refuses weights that do not fit the model (:func:`weights_problems`).
    """

    def __init__(self, model, save_dir="", **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.path_manager = _AtomicLocalWrites(self.path_manager)
        self.loaded_path = ""
        self._resumed = False
        self._incompatible = None

    def save(self, name: str, **kwargs) -> None:
        try:
            super().save(name, **kwargs)
        except OSError as e:
            if e.errno not in NO_SPACE:
                raise
            # fvcore's reading of last_checkpoint: the file it names, checked or not.
            tagged = DetectionCheckpointer.get_checkpoint_file(self)
            kept = (
                f"last_checkpoint still names {tagged}: free space, then continue from it with --resume"
                if tagged
                else "this run has no earlier checkpoint"
            )
            raise OSError(e.errno, f"{e.strerror}. Saving checkpoint {name} failed; {kept}") from e

    def resume_or_load(self, path: str, *, resume: bool = True):
        self._resumed = resume and self.has_checkpoint()
        return super().resume_or_load(path, resume=resume)

    def get_checkpoint_file(self) -> str:
        tagged = super().get_checkpoint_file()
        problem = checkpoint_problem(tagged) if tagged else "is not named by a readable last_checkpoint"
        if problem is None:
            return tagged
        for candidate in self._checkpoints_before(tagged):
            if checkpoint_problem(candidate) is None:
                logger.warning(
                    f"{tagged or 'last_checkpoint'} {problem}: resuming from {candidate}, the newest "
                    "whole checkpoint before it"
                )
                return candidate
        raise CheckpointError(
            f"{tagged or os.path.join(self.save_dir, 'last_checkpoint')} {problem}, and {self.save_dir} "
            "holds no whole checkpoint before it to resume from: train without --resume into a new "
            "OUTPUT_DIR (or with --overwrite)"
        )

    def _checkpoints_before(self, tagged: str) -> List[str]:
        """The numbered checkpoints of the save folder older than ``tagged``, newest first."""
        match = _NUMBERED.fullmatch(os.path.basename(tagged)) if tagged else None
        prefix = match.group("prefix") if match else "model"

        def order(name):
            found = _NUMBERED.fullmatch(name)
            if found is None or found.group("prefix") != prefix:
                return None
            return float("inf") if found.group("iteration") == "final" else int(found.group("iteration"))

        limit = order(os.path.basename(tagged)) if match else None
        numbered = [(order(n), n) for n in os.listdir(self.save_dir) if order(n) is not None]
        return [os.path.join(self.save_dir, n) for k, n in sorted(numbered, reverse=True) if limit is None or k < limit]

    def load(self, path: str, *args, **kwargs):
        if path and "://" not in path and not os.path.isfile(path):
            raise CheckpointError(f"{path}: checkpoint file does not exist")
        self.loaded_path = path
        self._incompatible = None
        return super().load(path, *args, **kwargs)

    def _load_file(self, filename: str):
        try:
            return super()._load_file(filename)
        except Exception as e:  # torch.load and pickle raise many types for a broken file
            reason = str(e).strip().splitlines()[0] if str(e).strip() else "empty or truncated file"
            raise CheckpointError(f"{filename}: not a readable checkpoint ({type(e).__name__}: {reason})") from e

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        self._incompatible = incompatible
        return incompatible

    def check_weights(self, *, evaluating: bool, allow_partial: bool = False) -> List[str]:
        """Refuse (:class:`CheckpointError`) the weights of the last :meth:`resume_or_load` or
        :meth:`load` when they do not fit the model: for evaluation or when resuming, every
        parameter must come from the checkpoint; for training from other weights, see
        :func:`weights_problems`. With ``allow_partial`` the problems are warnings. Returns the
        problems."""
        what = "evaluation" if evaluating else ("resuming" if self._resumed else "training")
        if not self.loaded_path:
            problems = ["no weights were loaded (MODEL.WEIGHTS is empty)"] if evaluating else []
            header = f"the {type(self.model).__name__} would be evaluated as initialized:"
        else:
            incompatible = self._incompatible
            problems = (
                []
                if incompatible is None
                else weights_problems(
                    list(self.model.state_dict()),
                    _filter_reused_missing_keys(self.model, incompatible.missing_keys),
                    incompatible.unexpected_keys,
                    incompatible.incorrect_shapes,
                    complete=evaluating or self._resumed,
                )
            )
            header = f"weights {self.loaded_path} do not fit the {type(self.model).__name__} for {what}:"
        if not problems:
            return problems
        message = header + "\n  - " + "\n  - ".join(problems)
        if not allow_partial:
            raise CheckpointError(
                message + "\nFix MODEL.WEIGHTS (or the config), or pass --allow-partial-weights to run "
                "anyway with the rest of the model as initialized (e.g. fine-tuning on other classes)."
            )
        logger.warning(message + "\n(--allow-partial-weights: running anyway)")
        return problems
