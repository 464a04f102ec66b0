"""Loading, key mapping, strict checks and reports shared by the checkpoint converters."""

import os
import re
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY

from ..utils import atomic_write

__all__ = [
    "ConversionError",
    "ConversionReport",
    "Rule",
    "apply_rules",
    "build_meta_model",
    "check_config",
    "config_differences",
    "load_checkpoint",
    "save_checkpoint",
    "state_dict_of",
]

# Keys listed in errors before "... and N more".
_MAX_LISTED = 12


class ConversionError(Exception):
    """A checkpoint that cannot be converted; the message names the file and the reason."""


@dataclass
class Rule:
    """
    How source keys matching ``pattern`` (a regex matched against the whole key) are converted.

    ``target`` gives the target key from the match; ``None`` marks the keys as ignored, with
    ``note`` as the reason. ``transform`` changes the tensor (e.g. reorders output channels);
    ``note`` then says what it does.
    """

    pattern: str
    target: Optional[Callable[[re.Match], str]]
    note: str = ""
    transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None


@dataclass
class ConversionReport:
    """What a conversion did: one ``(source key, target key, shape, note)`` per converted tensor,
    the ignored source keys with the reason, and free-form notes (class order, config checks)."""

    source: str
    mapped: List[Tuple[str, str, Tuple[int, ...], str]] = field(default_factory=list)
    ignored: List[Tuple[str, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def format(self, verbose: bool = False) -> str:
        lines = [f"{self.source}: {len(self.mapped)} tensors converted, {len(self.ignored)} ignored"]
        transformed = [(s, t, note) for s, t, _, note in self.mapped if note]
        if transformed:
            lines.append("  values changed, not only renamed:")
            lines += [f"    {t} <- {s}: {note}" for s, t, note in transformed]
        by_reason = defaultdict(list)
        for key, reason in self.ignored:
            by_reason[reason].append(key)
        for reason, keys in by_reason.items():
            lines.append(f"  ignored {len(keys)} ({reason}), e.g. {keys[0]}")
        lines += [f"  note: {note}" for note in self.notes]
        if verbose:
            lines.append("  mapping:")
            lines += [f"    {s} -> {t} {list(shape)}" for s, t, shape, _ in self.mapped]
        return "\n".join(lines)


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" ... and {more} more" if more > 0 else "")


def apply_rules(
    state_dict: Mapping[str, torch.Tensor],
    rules: Sequence[Rule],
    target_shapes: Mapping[str, torch.Size],
    report: ConversionReport,
    strict: bool = True,
) -> "OrderedDict[str, torch.Tensor]":
    """
    Converts ``state_dict`` with the first rule matching each key; floating tensors become float32.

    Shapes must equal ``target_shapes``. With ``strict``, every source key must be converted or
    ignored by a rule and every target key filled, else :class:`ConversionError`; otherwise those
    keys are left out and listed in ``report.notes``. Returns the tensors in the target's order.
    """
    converted, unused = {}, []
    for key, value in state_dict.items():
        match = rule = None
        for rule in rules:
            match = re.fullmatch(rule.pattern, key)
            if match:
                break
        if match is None:
            unused.append(key)
            continue
        if rule.target is None:
            report.ignored.append((key, rule.note))
            continue
        name = rule.target(match)
        if name in converted:
            first = next(s for s, t, _, _ in report.mapped if t == name)
            raise ConversionError(f"{report.source}: {first} and {key} both convert to {name}")
        tensor = rule.transform(value) if rule.transform else value
        converted[name] = tensor.float() if tensor.is_floating_point() else tensor
        report.mapped.append((key, name, tuple(tensor.shape), rule.note))

    mismatched = [
        f"{name} {list(tensor.shape)} (model: {list(target_shapes[name])})"
        for name, tensor in converted.items()
        if name in target_shapes and tensor.shape != target_shapes[name]
    ]
    if mismatched:
        raise ConversionError(f"{report.source}: shapes differ from the model's: {_listing(mismatched)}")
    unexpected = [name for name in converted if name not in target_shapes]
    missing = [name for name in target_shapes if name not in converted]
    problems = []
    if unused:
        problems.append(f"{len(unused)} source keys have no counterpart in the model: {_listing(unused)}")
    if unexpected:
        sources = [s for s, t, _, _ in report.mapped if t not in target_shapes]
        problems.append(f"{len(unexpected)} source keys map to names the model does not have: {_listing(sources)}")
    if missing:
        problems.append(f"{len(missing)} model keys are not filled: {_listing(missing)}")
    if problems and strict:
        raise ConversionError(f"{report.source}: " + "; ".join(problems))
    report.notes += [f"not strict, left out: {p}" for p in problems]
    report.mapped = [m for m in report.mapped if m[1] in target_shapes]
    return OrderedDict((name, converted[name]) for name in target_shapes if name in converted)


def config_differences(cfg, expected: Sequence[Tuple[str, object]], source_name: str) -> List[str]:
    """One line per ``(KEY.PATH, value)`` of ``expected`` where ``cfg`` has another value."""
    lines = []
    for key, want in expected:
        have = cfg
        for part in key.split("."):
            have = getattr(have, part)
        if not _same(have, want):
            lines.append(f"{key} is {have!r}, {source_name} uses {want!r}")
    return lines


def check_config(differences: Sequence[str], report: ConversionReport, strict: bool, source_name: str) -> None:
    """Raises :class:`ConversionError` on ``differences`` (from :func:`config_differences`) when
    ``strict``; otherwise lists them in ``report.notes``."""
    if differences and strict:
        raise ConversionError(f"{report.source}: the config differs from {source_name}: " + "; ".join(differences))
    report.notes += [f"config differs from {source_name}: {d}" for d in differences]


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)):
        return a == b
    return isinstance(b, (int, float)) and abs(a - b) <= 1e-6 * max(1.0, abs(b))


def build_meta_model(cfg) -> torch.nn.Module:
    """The model of ``cfg`` with its parameters on the meta device: names and shapes, no memory."""
    with torch.device("meta"):
        return META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)


def load_checkpoint(path: str, unsafe_pickle: bool = False):
    """
    ``torch.load`` on the CPU, with ``weights_only=True`` unless ``unsafe_pickle`` (which runs
    any code the file's pickle contains: only for trusted files).
    """
    if not os.path.isfile(path):
        raise ConversionError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=not unsafe_pickle)
    except Exception as e:  # torch.load raises many types for files that are not checkpoints
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if refused and not unsafe_pickle:
            raise ConversionError(
                f"{path}: holds Python objects besides tensors ({refused.group(1)}), which "
                "torch.load(weights_only=True) refuses; if you trust the file, pass --unsafe-pickle"
            ) from None
        reason = str(e).strip().splitlines()[0] if str(e).strip() else "empty or truncated file"
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {reason})") from None


def save_checkpoint(path: str, state_dict: Mapping[str, torch.Tensor], author: str) -> None:
    """Writes ``{"model": state_dict, "__author__": author}``, which DetectionCheckpointer reads
    with the names as they are (no name-matching heuristics)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with atomic_write(path, "wb") as f:  # never a half-written model where a good one was
        torch.save({"model": dict(state_dict), "__author__": author}, f)


def state_dict_of(checkpoint, path: str, wrappers: Tuple[str, ...]) -> Tuple[Dict[str, torch.Tensor], dict]:
    """
    The tensors of a loaded checkpoint: ``checkpoint`` itself when it maps names to tensors,
    else ``checkpoint[w]`` for the first ``w`` in ``wrappers`` that it has. Also returns the
    other top-level entries.
    """
    if not isinstance(checkpoint, Mapping):
        raise ConversionError(f"{path}: unknown checkpoint format (a {type(checkpoint).__name__}, not a dict)")
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return dict(checkpoint), {}
    for wrapper in wrappers:
        inner = checkpoint.get(wrapper)
        if isinstance(inner, Mapping) and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return dict(inner), {k: v for k, v in checkpoint.items() if k != wrapper}
    raise ConversionError(
        f"{path}: unknown checkpoint format: expected a dict of tensors or one under "
        f"{' / '.join(repr(w) for w in wrappers)}, got top-level keys {_listing([str(k) for k in checkpoint])}"
    )


def reorder_outputs(order: Sequence[int], group: int, name: str, source: str, keep_last: bool = False):
    """Transform taking output rows ``order`` (in groups of ``group`` rows), plus the last row
    unchanged when ``keep_last``."""
    rows = torch.tensor([i * group + k for i in order for k in range(group)])
    expected = len(rows) + keep_last

    def transform(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.shape[0] != expected:
            raise ConversionError(f"{source}: {name} has {tensor.shape[0]} outputs, expected {expected}")
        index = torch.cat([rows, torch.tensor([expected - 1])]) if keep_last else rows
        return tensor.index_select(0, index.to(tensor.device))

    return transform


def class_order(source_classes, cfg, report: ConversionReport, strict: bool) -> Optional[List[int]]:
    """Indices into ``source_classes`` in the order of the target dataset's classes, or None to
    keep the order. Background is the last logit in both models."""
    dataset = cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None
    target = MetadataCatalog.get(dataset).get("thing_classes", None) if dataset else None
    source_classes = list(source_classes)
    if target is None:
        report.notes.append(f"class order kept: {source_classes} of the checkpoint ({dataset!r} has no class names)")
        return None
    if list(target) == source_classes:
        report.notes.append(f"class order: the same as {dataset!r}; background last in both")
        return None
    if sorted(target) != sorted(source_classes):
        message = f"the checkpoint's classes {source_classes} are not those of {dataset!r}: {list(target)}"
        if strict:
            raise ConversionError(f"{report.source}: {message}")
        report.notes.append(f"class order kept: {message}")
        return None
    report.notes.append(f"class order: the checkpoint's reordered to {dataset!r}'s; background last in both")
    return [source_classes.index(name) for name in target]
