"""Loading, key mapping, strict checks and reports shared by the checkpoint converters, and the
rules for the mmdetection 2.x parts (anchors, RPN head, box head, class order) shared by
mmtrack's VID detectors and MaskTrack R-CNN."""

import math
import os
import re
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.anchor_generator import build_anchor_generator

from ..utils import atomic_write

__all__ = [
    "ConversionError",
    "ConversionReport",
    "MMDET_PREFIX",
    "MMDetAnchors",
    "Rule",
    "apply_rules",
    "build_meta_model",
    "config_differences",
    "enforce_config_match",
    "load_checkpoint",
    "mmdet_box_head_rules",
    "mmdet_class_order",
    "mmdet_rpn_rules",
    "reorder_rule",
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


def enforce_config_match(differences: Sequence[str], report: ConversionReport, strict: bool, source_name: str) -> None:
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


def reorder_rule(
    pattern: str,
    target: Callable[[re.Match], str],
    order: Sequence[int],
    group: int,
    outputs: str,
    note: str,
    source: str,
    keep_last: bool = False,
) -> Rule:
    """
    Rule whose tensors keep the output rows ``order`` (in groups of ``group`` rows), plus the last
    row unchanged when ``keep_last``. ``outputs`` names the rows in errors; ``note`` is reported
    unless ``order`` keeps every row in place.
    """
    rows = torch.tensor([i * group + k for i in order for k in range(group)])
    expected = len(rows) + keep_last

    def transform(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.shape[0] != expected:
            raise ConversionError(f"{source}: {outputs} has {tensor.shape[0]} outputs, expected {expected}")
        index = torch.cat([rows, torch.tensor([expected - 1])]) if keep_last else rows
        return tensor.index_select(0, index.to(tensor.device))

    return Rule(pattern, target, note if list(order) != sorted(order) else "", transform)


# ---- mmdetection 2.x parts of mmtrack's models --------------------------------------------------

# mmtrack's models hold their mmdet detector under "detector."; a plain mmdet detector has no prefix.
MMDET_PREFIX = r"(?:detector\.)?"


@dataclass(frozen=True)
class MMDetAnchors:
    """mmdet's RPN ``AnchorGenerator(strides, scales, ratios)``: base size = stride, centred on
    the cell's corner (center offset 0), ratio = h / w."""

    strides: Tuple[int, ...]
    scales: Tuple[int, ...]
    ratios: Tuple[float, ...] = (0.5, 1.0, 2.0)

    def cell_anchors(self, stride: int) -> torch.Tensor:
        """The anchors of one cell at (0, 0) of the level with ``stride``, ``[A, 4]`` XYXY, in the
        order of mmdet's RPN output channels: ratio-major (all scales of the first ratio, then of
        the next), w = stride * scale / sqrt(ratio), h = stride * scale * sqrt(ratio)."""
        boxes = []
        for ratio in self.ratios:
            for scale in self.scales:
                w = stride * scale / math.sqrt(ratio)
                h = stride * scale * math.sqrt(ratio)
                boxes.append([-w / 2, -h / 2, w / 2, h / 2])
        return torch.tensor(boxes, dtype=torch.float64)

    def order(self, cfg, model, source: str) -> List[int]:
        """
        For each anchor of a cell of the RPN of ``cfg`` (``model`` its model), in Detectron2's
        channel order, the index of the same anchor in mmdet's order; the same on every level (the
        RPN head is shared). Raises :class:`ConversionError` unless the config's anchors are these.
        """
        shapes = model.backbone.output_shape()
        generator = build_anchor_generator(cfg, [shapes[f] for f in cfg.MODEL.RPN.IN_FEATURES])
        if tuple(generator.strides) != self.strides:
            raise ConversionError(
                f"{source}: the RPN's anchor strides are {list(generator.strides)}, mmtrack's {list(self.strides)}"
            )
        orders = []
        for stride, cell in zip(self.strides, generator.cell_anchors):
            ours, theirs = cell.double(), self.cell_anchors(stride)
            order = []
            for box in ours:
                same = torch.nonzero(torch.isclose(theirs, box, atol=1e-3).all(dim=1)).flatten().tolist()
                if len(ours) != len(theirs) or len(same) != 1:
                    raise ConversionError(
                        f"{source}: MODEL.ANCHOR_GENERATOR (SIZES {list(cfg.MODEL.ANCHOR_GENERATOR.SIZES)}, "
                        f"ASPECT_RATIOS {list(cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS)}) does not give mmtrack's "
                        f"anchors (SIZES {[[s * k for k in self.scales] for s in self.strides]}, ASPECT_RATIOS "
                        f"{[list(self.ratios)]}, on strides {list(self.strides)})"
                    )
                order += same
            orders.append(order)
        if any(order != orders[0] for order in orders):
            raise ConversionError(f"{source}: the anchors are listed in different orders on different levels: {orders}")
        return orders[0]


def mmdet_rpn_rules(anchor_order: Sequence[int], source: str) -> List[Rule]:
    """Rules for mmdet's ``RPNHead`` -> Detectron2's ``StandardRPNHead``; the outputs of ``rpn_cls``
    and ``rpn_reg`` taken in ``anchor_order`` (from :meth:`MMDetAnchors.order`)."""
    p, rpn = MMDET_PREFIX, "proposal_generator.rpn_head."
    note = "anchors reordered from mmtrack's order (ratio-major) to the config's"
    return [
        Rule(rf"{p}rpn_head\.rpn_conv\.(weight|bias)", lambda m: f"{rpn}conv.{m[1]}"),
        reorder_rule(
            rf"{p}rpn_head\.rpn_cls\.(weight|bias)",
            lambda m: f"{rpn}objectness_logits.{m[1]}",
            anchor_order,
            1,
            "rpn_head.rpn_cls (one sigmoid logit per anchor)",
            note,
            source,
        ),
        reorder_rule(
            rf"{p}rpn_head\.rpn_reg\.(weight|bias)",
            lambda m: f"{rpn}anchor_deltas.{m[1]}",
            anchor_order,
            4,
            "rpn_head.rpn_reg (4 deltas per anchor)",
            note,
            source,
        ),
    ]


def mmdet_box_head_rules(class_order: Sequence[int], source: str) -> List[Rule]:
    """Rules for mmdet's ``BBoxHead`` with shared FC layers -> ``roi_heads.box_head.fc<i>`` and
    Detectron2's ``FastRCNNOutputLayers``; the classes' outputs of ``fc_cls`` (background last in
    both) and ``fc_reg`` (4 class-specific deltas) taken in ``class_order`` (from
    :func:`mmdet_class_order`)."""
    p, box = MMDET_PREFIX, "roi_heads.box_predictor."
    return [
        Rule(
            rf"{p}roi_head\.bbox_head\.shared_fcs\.(\d+)\.(weight|bias)",
            lambda m: f"roi_heads.box_head.fc{int(m[1]) + 1}.{m[2]}",
        ),
        reorder_rule(
            rf"{p}roi_head\.bbox_head\.fc_cls\.(weight|bias)",
            lambda m: f"{box}cls_score.{m[1]}",
            class_order,
            1,
            "roi_head.bbox_head.fc_cls (classes + background)",
            "classes reordered, background kept last",
            source,
            keep_last=True,
        ),
        reorder_rule(
            rf"{p}roi_head\.bbox_head\.fc_reg\.(weight|bias)",
            lambda m: f"{box}bbox_pred.{m[1]}",
            class_order,
            4,
            "roi_head.bbox_head.fc_reg (4 deltas per class)",
            "classes reordered",
            source,
        ),
    ]


def mmdet_class_order(
    extra: Mapping, cfg, report: ConversionReport, strict: bool, default: Sequence[str] = ()
) -> List[int]:
    """
    Indices into the checkpoint's classes (``extra["meta"]["CLASSES"]``, else ``default``) in the
    order of the ``thing_classes`` of the config's test dataset; the checkpoint's order when either
    names no classes. Background is the last logit in both models.
    """
    meta = extra.get("meta")
    names = meta.get("CLASSES") if isinstance(meta, Mapping) else None
    source_classes = list(names or default)
    keep = list(range(cfg.MODEL.ROI_HEADS.NUM_CLASSES))
    if not source_classes:
        report.notes.append("class order kept: the checkpoint names no classes (meta['CLASSES'])")
        return keep
    dataset = cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None
    target = MetadataCatalog.get(dataset).get("thing_classes", None) if dataset else None
    if target is None:
        report.notes.append(f"class order kept: {source_classes} of the checkpoint ({dataset!r} has no class names)")
        return keep
    if list(target) == source_classes:
        report.notes.append(f"class order: the same as {dataset!r}; background last in both")
        return keep
    if sorted(target) != sorted(source_classes):
        message = f"the checkpoint's classes {source_classes} are not those of {dataset!r}: {list(target)}"
        if strict:
            raise ConversionError(f"{report.source}: {message}")
        report.notes.append(f"class order kept: {message}")
        return keep
    report.notes.append(f"class order: the checkpoint's reordered to {dataset!r}'s; background last in both")
    return [source_classes.index(name) for name in target]
