#!/usr/bin/env python
"""
Run an ablation of the Temporal RoI Align paper: every point of the ``GRID`` of an ablation file
(configs/ablations/*.py) goes through tools/lazyconfig_train_net.py into its own output folder,
then a table shows mAP@0.5 next to the paper's number (the file's ``PAPER_MAP50``).

    python tools/run_ablation.py configs/ablations/topk_K.py --num-gpus 8
    python tools/run_ablation.py configs/ablations/topk_K.py --only K=2 --only K=6
    python tools/run_ablation.py configs/ablations/stride_S.py --toy     # toy model and data, CPU
    python tools/run_ablation.py configs/ablations/topk_K.py --dry-run   # print the commands
    python tools/run_ablation.py configs/ablations/topk_K.py train.max_iter=1000   # every point
    python tools/run_ablation.py configs/ablations/topk_K.py --toy --import my_datasets \\
        'dataloader.train.dataset.names=[my_train]' dataloader.test.dataset.names=my_val

--import MODULE (a module that registers your datasets, docs/custom_data.md) is imported here
and by every run of tools/lazyconfig_train_net.py.

Points whose overrides differ only in test settings (``dataloader.test.*``,
``dataloader.evaluator.*``) share one trained model: the first one run trains it, the others
evaluate its model_final.pth with --eval-only. Each point's folder records the ablation file,
--toy and the overrides it ran with (ablation_point.json); a model_final.pth or results already
there are reused only if they are the same, and a folder of other (or unrecorded) overrides stops
the run before anything starts: pass another --output-dir, or delete the folder to run the point
again. A second run_ablation.py into the same output folder is refused while one runs. A
model_final.pth that is not a whole checkpoint (cut short by a copy) does not count as trained:
its point trains again with --resume, from its newest whole checkpoint; unreadable results count
as missing.
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time

from detectron2.config import LazyConfig
from omegaconf import DictConfig, OmegaConf
from tabulate import tabulate

from temporal_roi_align.checkpoint import checkpoint_problem
from temporal_roi_align.config_checks import check_lazy_config, check_lazy_overrides
from temporal_roi_align.engine import HelpFormatter, add_import_argument, import_modules, lock_output_dir
from temporal_roi_align.utils import atomic_write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(ROOT, "tools", "lazyconfig_train_net.py")
# The config every ablation file starts from, and its toy-size twin.
PAPER_BASE = os.path.join(ROOT, "configs", "ablations", "troi_R_101_DC5.py")
TOY_BASE = os.path.join(ROOT, "configs", "ablations", "troi_toy.py")
TEST_ONLY = ("dataloader.test.", "dataloader.evaluator.")
RESULTS = os.path.join("inference", "vid_results.json")
# What a point's folder ran: the ablation file, --toy and the overrides.
RECORD = "ablation_point.json"


def log(message):
    print(f"[run_ablation] {message}", flush=True)


def load_grid(path):
    """``(GRID, PAPER_MAP50)`` of an ablation file, checked; PAPER_MAP50 is {} if absent."""
    if not os.path.isfile(path):
        raise SystemExit(f"{path}: ablation file not found")
    try:
        grid = LazyConfig.load(path, "GRID")
    except KeyError:
        raise SystemExit(f"{path} defines no GRID (a list of (name, [overrides]))") from None
    try:
        paper = dict(LazyConfig.load(path, "PAPER_MAP50"))
    except KeyError:
        paper = {}
    names = []
    for point in grid:
        if not (
            isinstance(point, (tuple, list))
            and len(point) == 2
            and isinstance(point[0], str)
            and isinstance(point[1], (tuple, list))
            and all(isinstance(o, str) for o in point[1])
        ):
            raise SystemExit(f"{path}: GRID entries must be (name, [overrides]), got {point!r}")
        if not re.fullmatch(r"[\w.=+-]+", point[0]):
            raise SystemExit(f"{path}: GRID name {point[0]!r} must be a folder name (letters, digits, _.=+-)")
        names.append(point[0])
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SystemExit(f"{path}: GRID names {duplicates} appear more than once")
    unknown = sorted(set(paper) - set(names))
    if unknown:
        raise SystemExit(f"{path}: PAPER_MAP50 names {unknown} are not in GRID")
    return grid, paper


def _leaves(tree, prefix=""):
    """Dotted key -> value of every value of a nested dict that is not a dict (lists are values)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def rebase(cfg: DictConfig, old_base: DictConfig, new_base: DictConfig) -> DictConfig:
    """
    ``new_base`` with the changes that ``cfg``, a config built on ``old_base``, makes to it, found
    value by value: e.g. an ablation's settings moved from the paper's model and data to the toy's.
    """
    old = _leaves(OmegaConf.to_container(old_base, resolve=False))
    ours = _leaves(OmegaConf.to_container(cfg, resolve=False))
    removed = sorted(old.keys() - ours.keys())
    if removed:
        raise ValueError(f"cannot move a config that removes keys of its base: {removed}")
    for key, value in ours.items():
        if key in old and old[key] == value:
            continue
        parent = key.rpartition(".")[0]
        if parent and not isinstance(OmegaConf.select(new_base, parent, default=None), DictConfig):
            raise ValueError(f"cannot move {key}: the new base has no {parent}")
        OmegaConf.update(new_base, key, value, merge=False)
    return new_base


def point_config(path, overrides, toy=False) -> DictConfig:
    """The config of one point: the ablation file (moved to the toy base with ``toy``) plus ``overrides``."""
    cfg = LazyConfig.load(path)
    if toy:
        cfg = rebase(cfg, LazyConfig.load(PAPER_BASE), LazyConfig.load(TOY_BASE))
    check_lazy_overrides(cfg, overrides, path)
    cfg = LazyConfig.apply_overrides(cfg, overrides)
    check_lazy_config(cfg, path)
    return cfg


def training_key(overrides):
    """The overrides that change training: points with the same key share a trained model."""
    return tuple(o for o in overrides if not o.startswith(TEST_ONLY))


def point_record(ablation, toy, overrides):
    """What a point's folder records (:data:`RECORD`) of the run it holds."""
    return {"ablation": os.path.basename(ablation), "toy": toy, "overrides": list(overrides)}


def record_problem(folder, record):
    """Why ``folder`` holds a run (checkpoints, model or results) other than ``record``'s, or one
    whose record is missing (written by an older run_ablation.py) or unreadable; None when it
    holds ``record``'s run or none."""
    ran = [n for n in ("last_checkpoint", "model_final.pth", RESULTS) if os.path.exists(os.path.join(folder, n))]
    if not ran:
        return None
    path = os.path.join(folder, RECORD)
    if not os.path.exists(path):
        return f"holds {', '.join(ran)} of unknown overrides (no {RECORD})"
    try:
        with open(path) as f:
            recorded = json.load(f)
    except ValueError as e:
        return f"holds {', '.join(ran)}, and its {RECORD} is unreadable ({e})"
    if recorded == record:
        return None
    differences = [
        f"{key} {recorded.get(key)!r} there, {value!r} now"
        for key, value in record.items()
        if key != "overrides" and recorded.get(key) != value
    ]
    theirs, ours = list(recorded.get("overrides", [])), record["overrides"]
    if theirs != ours:
        there, now = [o for o in theirs if o not in ours], [o for o in ours if o not in theirs]
        differences.append(f"overrides {there} there, {now} now" if there or now else "overrides in another order")
    return f"holds a run of other settings ({RECORD}): {'; '.join(differences)}"


def read_map50(folder):
    """The point's mAP@0.5, None when it has no (readable) results."""
    path = os.path.join(folder, RESULTS)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)["bbox"]["AP50"]
    except (ValueError, KeyError, TypeError) as e:
        log(f"{path}: unreadable results ({type(e).__name__}: {e}); the point runs again")
        return None


def trained_model(folder):
    """The point's model_final.pth if it is a whole checkpoint, else None (logged)."""
    final = os.path.join(folder, "model_final.pth")
    if not os.path.exists(final):
        return None
    problem = checkpoint_problem(final)
    if problem is not None:
        log(f"{final} {problem}: not taken as trained")
        return None
    return final


def save_config(cfg, path):
    """``LazyConfig.save``, atomically: written beside ``path``, then renamed over it."""
    partial = path + ".partial.yaml"
    try:
        LazyConfig.save(cfg, partial)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _quote(path):
    """``path`` as a quoted value of an override (hydra's grammar: escape quotes, and the
    backslashes before a quote or at the end)."""
    path = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", path)
    return "'" + re.sub(r"\\+$", lambda m: m.group(0) * 2, path) + "'"


def _fmt(value):
    return "-" if value is None else f"{value:.1f}"


def _duration(seconds):
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m{seconds:02d}s"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("ablation", help="an ablation file, e.g. configs/ablations/topk_K.py")
    parser.add_argument("--only", action="append", metavar="NAME", help="run this GRID point only (repeatable)")
    parser.add_argument(
        "--toy",
        action="store_true",
        help="apply the ablation's changes to troi_R_101_DC5.py to troi_toy.py instead: the toy "
        "model and data, minutes on a CPU",
    )
    parser.add_argument("--output-dir", help="default: ./output/ablations/<ablation>[_toy]")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per point (CPU processes without CUDA)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check every point and print the commands only (--toy still writes its config)",
    )
    add_import_argument(parser)
    parser.add_argument("opts", nargs="*", help="overrides for every point, path.key=value")
    return parser.parse_intermixed_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import_modules(args.modules)
    grid, paper = load_grid(args.ablation)
    stem = os.path.splitext(os.path.basename(args.ablation))[0]
    output_dir = args.output_dir or os.path.join("output", "ablations", stem + ("_toy" if args.toy else ""))
    names = [name for name, _ in grid]
    unknown = sorted(set(args.only or []) - set(names))
    if unknown:
        raise SystemExit(f"--only {unknown}: not in the GRID of {args.ablation}: {names}")
    points = [(n, [*o, *args.opts]) for n, o in grid if not args.only or n in args.only]

    for name, overrides in points:
        try:
            point_config(args.ablation, overrides, args.toy)
        except Exception as e:  # a bad override or config: report it before any long run
            raise SystemExit(f"{args.ablation}, point {name}: {type(e).__name__}: {e}") from None
    if not args.dry_run:
        holder = lock_output_dir(output_dir, key="--output-dir")
        if holder is not None:  # its record check and its points' records would race with ours
            raise SystemExit(f"--output-dir {output_dir} is in use by another run_ablation.py ({holder})")
    records = {name: point_record(args.ablation, args.toy, [*o, *args.opts]) for name, o in grid}
    others = [(name, record_problem(os.path.join(output_dir, name), records[name])) for name, _ in points]
    others = [f"{os.path.join(output_dir, name)} {problem}" for name, problem in others if problem]
    if others:
        raise SystemExit(
            "results of other runs would be taken for this one's, or overwritten:\n  - "
            + "\n  - ".join(others)
            + "\nPass another --output-dir, or delete a folder to run its point again."
        )
    config_file = args.ablation
    if args.toy:
        # lazyconfig_train_net.py reads a file: the ablation moved to the toy base, as yaml.
        config_file = os.path.join(output_dir, "toy_config.yaml")
        os.makedirs(output_dir, exist_ok=True)
        cfg = rebase(LazyConfig.load(args.ablation), LazyConfig.load(PAPER_BASE), LazyConfig.load(TOY_BASE))
        save_config(cfg, config_file)

    # A model trained for a point of the same training key, with the same record, is evaluated,
    # not trained again.
    trained = {}
    for name, overrides in grid:
        folder = os.path.join(output_dir, name)
        final = trained_model(folder)
        if final is not None and record_problem(folder, records[name]) is None:
            trained.setdefault(training_key([*overrides, *args.opts]), final)

    log(f"{len(points)} point(s) of {args.ablation} into {output_dir}")
    start = time.perf_counter()
    for index, (name, overrides) in enumerate(points, 1):
        folder = os.path.join(output_dir, name)
        key = training_key(overrides)
        prefix = f"({index}/{len(points)}) {name}:"
        if read_map50(folder) is not None:
            log(f"{prefix} results already in {folder}, not run again")
            continue
        command = [sys.executable, TRAIN_NET, "--config-file", config_file]
        command += ["--num-gpus", str(args.num_gpus), *(f"--import={m}" for m in args.modules)]
        if key in trained:
            command += ["--eval-only", f"train.init_checkpoint={_quote(trained[key])}"]
            what = f"evaluating {trained[key]}"
        else:
            command += ["--resume"]  # continues an interrupted training from its last checkpoint
            what = "training and evaluating"
        command += [
            f"train.output_dir={_quote(folder)}",
            f"dataloader.evaluator.output_dir={_quote(os.path.join(folder, 'inference'))}",
            *overrides,
        ]
        if args.dry_run:
            print(shlex.join(command))
            trained.setdefault(key, os.path.join(folder, "model_final.pth"))
            continue
        log(f"{prefix} {what} -> {folder}")
        os.makedirs(folder, exist_ok=True)
        with atomic_write(os.path.join(folder, RECORD)) as f:
            json.dump(records[name], f, indent=2)
        point_start = time.perf_counter()
        returncode = subprocess.run(command).returncode
        if returncode != 0:
            raise SystemExit(f"{name} failed (exit code {returncode}); see {folder}/log.txt")
        trained.setdefault(key, os.path.join(folder, "model_final.pth"))
        log(
            f"{prefix} done in {_duration(time.perf_counter() - point_start)}, "
            f"mAP@0.5 {_fmt(read_map50(folder))} (total {_duration(time.perf_counter() - start)})"
        )
    if args.dry_run:
        return

    rows = []
    for name, _ in points:
        ours, theirs = read_map50(os.path.join(output_dir, name)), paper.get(name)
        difference = None if ours is None or theirs is None else ours - theirs
        rows.append([name, _fmt(ours), _fmt(theirs), _fmt(difference), os.path.join(output_dir, name)])
    print(f"\n{stem}{' (toy)' if args.toy else ''}: mAP@0.5 (%); the paper's on ImageNet VID val")
    print(
        tabulate(
            rows,
            headers=["point", "mAP@0.5", "paper", "difference", "output"],
            disable_numparse=True,
        )
    )


if __name__ == "__main__":
    main()
