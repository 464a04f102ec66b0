#!/usr/bin/env python
"""
The quickstart: does temporal aggregation help on frames a model cannot read alone?

Detection (--task vid): on the generated toy dataset in the ImageNet VID format (about a third of
each video's frames are degraded so that the objects stay visible but their class cannot be told
from that frame alone) it trains on the CPU a tiny single-frame detector and the same detector
with Temporal RoI Align, evaluates both on held-out videos and prints mAP@0.5 overall and on the
degraded frames, each with a 95% bootstrap interval over the videos, and the difference
TRoI - single-frame with its own (paired) interval.

Video instance segmentation (--task vis): the same on the toy dataset in the YouTube-VIS format
with MaskTrack R-CNN and MaskTrack R-CNN + Temporal RoI Align, scored by the YouTube-VIS mask AP.

Recipe (the same schedule for every model of a task, so that rows differ only in the RoI
features): a base single-frame model is trained for --base-iters iterations; each model then
starts from it and trains --finetune-iters more (the single-frame row too; the VIS models with the
base's backbone frozen). Starting TRoI from a model that already localises the objects lets its
temporal aggregation learn within minutes on 2 cores. Each task writes an annotated video of one
held-out video.
"""

import argparse
import json
import logging
import os
import time

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger
from tabulate import tabulate
from tqdm import tqdm

from temporal_roi_align.data import ensure_toy_vid, ensure_toy_vis
from temporal_roi_align.engine import HelpFormatter, VideoTrainer, check_output_dir, setup_cfg
from temporal_roi_align.evaluation import video_ground_truth
from temporal_roi_align.evaluation.bootstrap import (
    AP50Table,
    bootstrap_ap50,
    bootstrap_ytvis,
    percentile_interval,
)
from temporal_roi_align.model_zoo import get_config_file
from temporal_roi_align.postprocessing import seq_nms_arrays
from temporal_roi_align.predictor import VideoPredictor
from temporal_roi_align.utils import atomic_write
from temporal_roi_align.utils.drawing import draw_instances

VID_MODELS = {
    "single_frame": "Single-frame (ROIAlign)",
    "troi": "Temporal RoI Align",
    "selsa": "SELSA",
    "selsa_troi": "SELSA + TRoI",
    "fgfa": "FGFA",
    "dff": "DFF",
    "tam": "TAM block",
    "tam_troi": "TAM block + TRoI",
}
VIS_MODELS = {"masktrack": "MaskTrack R-CNN", "masktrack_troi": "MaskTrack R-CNN + TRoI"}
# task: (the base and single-frame row, default base iterations, default fine-tuning iterations,
# the task whose base model the base starts from: the VIS base starts from the detection base,
# whose network it shares, as MaskTrack R-CNN starts from a trained Mask R-CNN)
RECIPES = {"vid": ("single_frame", 400, 150, None), "vis": ("masktrack", 200, 100, "vid")}
# Config overrides of the models fine-tuned from a task's base (before the command line's): the VIS
# models keep the base's backbone frozen, since fine-tuning conv4 through TRoI cost the masks their
# precision (docs/video_instance_segmentation.md).
FINETUNE_OPTS = {"vid": [], "vis": ["MODEL.BACKBONE.FREEZE_AT", 5, "MODEL.CHANNEL_REDUCTION.FREEZE", True]}
SEQ_NMS_ROW = "troi_seq_nms"
BASELINE_LABELS = {"single_frame": "single-frame", "masktrack": "MaskTrack R-CNN"}


def add_bootstrap_options(parser):
    """--bootstrap and --vis-bootstrap, of this script and quickstart_seeds.py."""
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap redraws of the videos (vid)")
    parser.add_argument(
        "--vis-bootstrap",
        type=int,
        default=200,
        help="bootstrap redraws of the videos (vis: each one a full evaluation)",
    )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--task",
        choices=["vid", "vis", "all"],
        default="all",
        help="detection (vid), video instance segmentation (vis), or both",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=["single_frame", "troi"],
        choices=sorted(VID_MODELS),
        help="detection models (vid); the single-frame row is always trained",
    )
    parser.add_argument(
        "--base-iters",
        type=int,
        default=None,
        help=f"iterations of each base model (default {RECIPES['vid'][1]} vid, {RECIPES['vis'][1]} vis)",
    )
    parser.add_argument(
        "--finetune-iters",
        type=int,
        default=None,
        help=f"iterations of each model from the base (default {RECIPES['vid'][2]}, {RECIPES['vis'][2]})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the toy datasets")
    add_bootstrap_options(parser)
    parser.add_argument(
        "--seq-nms",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a row of the TRoI detections after Seq-NMS",
    )
    parser.add_argument("--output", default="output/quickstart", help="where models, results and videos go")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides for every model, KEY VALUE ...")
    return parser.parse_args(argv)


def config(name, output_dir, opts, iters=1, weights=""):
    """The toy config ``name`` with the quickstart's schedule of ``iters`` iterations."""
    opts = [
        "OUTPUT_DIR",
        output_dir,
        "MODEL.WEIGHTS",
        weights,
        "SOLVER.MAX_ITER",
        iters,
        "SOLVER.STEPS",
        (int(iters * 0.8),) if iters >= 2 else (),
        "SOLVER.WARMUP_ITERS",
        min(30, iters // 10),
        *opts,
    ]
    return setup_cfg(get_config_file(f"toy/{name}.yaml"), opts)


def train(cfg):
    """Trains ``cfg`` without evaluation (DATASETS.TEST emptied); returns the seconds taken and
    the model."""
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED)
    start = time.perf_counter()
    train_cfg = cfg.clone()
    train_cfg.defrost()
    train_cfg.DATASETS.TEST = ()
    check_output_dir(cfg.OUTPUT_DIR, resume=False, eval_only=False, overwrite=True)  # a new run replaces the last
    trainer = VideoTrainer(train_cfg)
    # From the base model, the temporal parts (TRoI's attention, SELSA's modules) start untrained.
    trainer.resume_or_load(resume=False, allow_partial_weights=True)
    trainer.train()
    return time.perf_counter() - start, trainer.model


def stage(text):
    """A heading on the console between the stages of the quickstart."""
    print(f"\n===== {text} =====", flush=True)


def iterations(task, args):
    """(base, fine-tuning) iterations of ``task``: the recipe's unless given."""
    _, base_iters, finetune_iters, _ = RECIPES[task]
    return (
        base_iters if args.base_iters is None else args.base_iters,
        finetune_iters if args.finetune_iters is None else args.finetune_iters,
    )


def base_weights(task, args):
    """The weights the base of ``task`` starts from: none, or the base model of the task it
    starts from (trained here first when that task's half has not run: ``--task vis``)."""
    start_from = RECIPES[task][3]
    if start_from is None:
        return ""
    weights = os.path.join(args.output, start_from, "base", "model_final.pth")
    if os.path.isfile(weights):
        print(f"{task}: the base starts from {weights}", flush=True)
    else:
        stage(f"{task}: training the {start_from} base model that the {task} base starts from")
        ensure_toy_vid(seed=args.seed)
        name, iters = RECIPES[start_from][0], iterations(start_from, args)[0]
        train(config(name, os.path.dirname(weights), args.opts, iters))
    return weights


def train_task(task, models, args):
    """The base model, then each of ``models`` from it; returns their configs, models and
    training seconds (the base's included)."""
    base_name = RECIPES[task][0]
    base_iters, finetune_iters = iterations(task, args)
    labels = VID_MODELS if task == "vid" else VIS_MODELS
    count = len(models) + 1
    init = base_weights(task, args)
    stage(f"{task}: training the base model, 1 of {count} ({base_iters} iterations)")
    base = config(base_name, os.path.join(args.output, task, "base"), args.opts, base_iters, init)
    base_seconds, _ = train(base)
    weights = os.path.join(base.OUTPUT_DIR, "model_final.pth")
    pace = base_seconds / max(base_iters, 1)
    trained = {}
    for i, name in enumerate(models):
        left = (len(models) - i) * finetune_iters * pace
        stage(
            f"{task}: training {labels[name]}, {i + 2} of {count} ({finetune_iters} iterations from the base; "
            f"training ETA about {left / 60:.0f} min at the base's pace)"
        )
        opts = [*FINETUNE_OPTS[task], *args.opts]
        cfg = config(name, os.path.join(args.output, task, name), opts, finetune_iters, weights)
        seconds, model = train(cfg)
        trained[name] = (cfg, model, base_seconds + seconds)
    stage(f"{task}: evaluating {len(models)} models on the held-out videos")
    return trained


def test(cfg, model, file_name):
    """The evaluator's results on the config's test set, and the predictions it saved."""
    (dataset,) = cfg.DATASETS.TEST
    results = VideoTrainer.test(cfg, model)
    with open(os.path.join(cfg.OUTPUT_DIR, "inference", dataset, file_name)) as f:
        return results, json.load(f)


def with_seq_nms(detections, dataset_dicts):
    """The detections of each whole video after Seq-NMS (as VIDEO.POSTPROCESS seq_nms gives)."""
    by_image = {}
    for det in detections:
        by_image.setdefault(det["image_id"], []).append(det)
    videos = {}
    for d in sorted(dataset_dicts, key=lambda d: d["frame_id"]):
        videos.setdefault(d["video_id"], []).append(by_image.get(d["image_id"], []))
    out = []
    for frames in videos.values():
        boxes = [
            np.array([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in f)]).reshape(-1, 4) for f in frames
        ]
        keep, scores = seq_nms_arrays(
            boxes,
            [np.array([d["score"] for d in f]) for f in frames],
            [np.array([d["category_id"] for d in f], dtype=np.int64) for f in frames],
        )
        for f, k, s in zip(frames, keep, scores):
            out += [dict(f[i], score=float(score)) for i, score in zip(k, s)]
    return out


def vid_intervals(detections, dataset, samples, seed, baseline):
    """AP50 and degraded-frame AP50 of each set of detections with 95% bootstrap intervals over
    the videos, and their paired differences to ``baseline``'s."""
    dicts, metadata = DatasetCatalog.get(dataset), MetadataCatalog.get(dataset)
    degraded = {d["image_id"] for d in dicts if metadata.frame_subsets["degraded"](d)}
    names, tables = list(detections), []
    for name in names:
        tables.append(AP50Table(dicts, detections[name], metadata.thing_classes))
        tables.append(AP50Table(dicts, detections[name], metadata.thing_classes, image_ids=degraded))
    draws = bootstrap_ap50(tables, samples=samples, seed=seed)
    values = np.array([t.ap50() for t in tables])
    return _summary(
        names, ["AP50", "AP50-degraded"], values.reshape(len(names), 2), draws.reshape(samples, len(names), 2), baseline
    )


def _summary(names, metrics, values, draws, baseline):
    """{name: {metric: value, metric-ci95: interval, minus_<baseline>: {...}}} from the values
    ``[models, metrics]`` and their paired redraws ``[samples, models, metrics]``."""
    summary = {}
    b = names.index(baseline)
    for j, name in enumerate(names):
        s = {}
        for m, metric in enumerate(metrics):
            s[metric], s[f"{metric}-ci95"] = float(values[j, m]), percentile_interval(draws[:, j, m])
        if j != b:
            s[f"minus_{baseline}"] = {}
            for m, metric in enumerate(metrics):
                s[f"minus_{baseline}"][metric] = float(values[j, m] - values[b, m])
                s[f"minus_{baseline}"][f"{metric}-ci95"] = percentile_interval(draws[:, j, m] - draws[:, b, m])
        summary[name] = s
    return summary


def format_ci(value, interval):
    return f"{value:.1f} [{interval[0]:.1f}, {interval[1]:.1f}]"


def table(summary, metrics, labels, baseline, extra):
    """Rows of the printed table: each model, then each difference to ``baseline``
    (``extra(name)``: the row's last columns)."""
    rows = [[labels[n]] + [format_ci(s[m], s[f"{m}-ci95"]) for m in metrics] + extra(n) for n, s in summary.items()]
    for name, s in summary.items():
        if f"minus_{baseline}" in s:
            d = s[f"minus_{baseline}"]
            rows.append(
                [f"{labels[name]} - {BASELINE_LABELS[baseline]}"]
                + [format_ci(d[m], d[f"{m}-ci95"]) for m in metrics]
                + [""] * len(extra(name))
            )
    return rows


def run_vid(args):
    base = RECIPES["vid"][0]
    models = [base] + [m for m in args.models if m != base]
    ensure_toy_vid(seed=args.seed)
    trained = train_task("vid", models, args)
    results, detections = {}, {}
    for name, (cfg, model, _) in trained.items():
        results[name], detections[name] = test(cfg, model, "coco_instances_results.json")
    (dataset,) = trained[base][0].DATASETS.TEST
    if args.seq_nms and "troi" in detections:
        detections[SEQ_NMS_ROW] = with_seq_nms(detections["troi"], DatasetCatalog.get(dataset))
    summary = vid_intervals(detections, dataset, args.bootstrap, args.seed, base)
    trained_as = {name: name for name in models} | {SEQ_NMS_ROW: "troi"}
    for name, s in summary.items():
        s["AP"] = results[name]["bbox"]["AP"] if name in results else None
        s["train_seconds"] = trained[trained_as[name]][2]
    labels = {**VID_MODELS, SEQ_NMS_ROW: "Temporal RoI Align + Seq-NMS"}
    rows = table(
        summary,
        ["AP50", "AP50-degraded"],
        labels,
        base,
        lambda n: ["" if summary[n]["AP"] is None else f"{summary[n]['AP']:.1f}", f"{summary[n]['train_seconds']:.0f}"],
    )
    headers = ["model", "mAP@0.5", "mAP@0.5 degraded frames", "AP@[.5:.95]", "train s"]
    return dataset, summary, (headers, rows), trained[models[-1] if "troi" not in trained else "troi"][0]


# Columns of the VIS table: the YouTube-VIS video mask AP, and the per-frame mask AP of the same
# video-level predictions on the degraded and on the clean frames (where a temporal gain should
# and should not show).
VIS_METRICS = {
    "AP": "video mask AP",
    "AP50": "video mask AP@0.5",
    "frame_AP-degraded": "per-frame mask AP degraded frames",
    "frame_AP-clean": "per-frame mask AP clean frames",
}


def vis_intervals(predictions, dataset, samples, seed, baseline):
    """:data:`VIS_METRICS` of each set of video-level predictions (results.json's, the dataset's
    category ids) with 95% bootstrap intervals over the videos, and their paired differences to
    ``baseline``'s (every metric on the same redraws)."""
    dicts, metadata = DatasetCatalog.get(dataset), MetadataCatalog.get(dataset)
    videos = sorted({d["video_id"] for d in dicts})
    to_dataset = {v: k for k, v in metadata.get("thing_dataset_id_to_contiguous_id", {}).items()}
    categories = [(to_dataset.get(i, i), n) for i, n in enumerate(metadata.thing_classes)]
    ground_truth = [
        dict(g, category_id=to_dataset.get(g["category_id"], g["category_id"])) for g in video_ground_truth(dicts)
    ]
    names = list(predictions)
    sets = [predictions[n] for n in names]
    values, draws = bootstrap_ytvis(videos, categories, ground_truth, sets, ("AP", "AP50"), samples, seed)
    degraded = metadata.frame_subsets["degraded"]
    for keep in (degraded, lambda d: not degraded(d)):
        frames = [(d["video_id"], d["frame_id"]) for d in dicts if keep(d)]
        v, dr = bootstrap_ytvis(videos, categories, ground_truth, sets, ("AP",), samples, seed, frames=frames)
        values, draws = np.concatenate([values, v], axis=1), np.concatenate([draws, dr], axis=2)
    return _summary(names, list(VIS_METRICS), values, draws, baseline)


def run_vis(args):
    base = RECIPES["vis"][0]
    models = list(VIS_MODELS)
    ensure_toy_vis(seed=args.seed)
    trained = train_task("vis", models, args)
    predictions = {name: test(cfg, model, "results.json")[1] for name, (cfg, model, _) in trained.items()}
    (dataset,) = trained[base][0].DATASETS.TEST
    summary = vis_intervals(predictions, dataset, args.vis_bootstrap, args.seed, base)
    for name, s in summary.items():
        s["train_seconds"] = trained[name][2]
    rows = table(summary, list(VIS_METRICS), VIS_MODELS, base, lambda n: [f"{summary[n]['train_seconds']:.0f}"])
    headers = ["model", *VIS_METRICS.values(), "train s"]
    return dataset, summary, (headers, rows), trained["masktrack_troi"][0]


def write_annotated_video(cfg, path):
    """One held-out video of ``cfg``'s test set, drawn with the model's predictions."""
    (dataset,) = cfg.DATASETS.TEST
    dicts = DatasetCatalog.get(dataset)
    first_video = dicts[0]["video_id"]
    files = [d["file_name"] for d in sorted(dicts, key=lambda d: d["frame_id"]) if d["video_id"] == first_video]
    frames = [cv2.imread(f) for f in files]
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    predictor = VideoPredictor(cfg)
    metadata = MetadataCatalog.get(dataset)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 5, (width, height))
    for frame, output in tqdm(zip(frames, predictor.iter_video(frames)), total=len(frames), desc="video"):
        instances = output["instances"]
        writer.write(draw_instances(frame, instances[instances.scores > 0.5], metadata))
    writer.release()


class OncePerModel(logging.Filter):
    """Lets Detectron2's dump of the model ("Model:\n...") through once per architecture: the base
    and the rows that share its architecture are not printed again."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def filter(self, record):
        message = record.getMessage()
        if not message.startswith("Model:\n"):
            return True
        new = message not in self.seen
        self.seen.add(message)
        return new


def main(argv=None):
    args = parse_args(argv)
    logging.getLogger("detectron2.engine.defaults").addFilter(OncePerModel())
    setup_logger(name="temporal_roi_align")
    setup_logger(output=os.path.join(args.output, "log.txt"))
    tasks = ["vid", "vis"] if args.task == "all" else [args.task]
    runners = {"vid": run_vid, "vis": run_vis}
    summary, printed, videos = {"toy_seed": args.seed, "opts": list(map(str, args.opts))}, [], []
    for task in tasks:
        start = time.perf_counter()
        dataset, task_summary, (headers, rows), video_cfg = runners[task](args)
        video = os.path.join(args.output, task, f"{os.path.basename(video_cfg.OUTPUT_DIR)}_val_video.mp4")
        write_annotated_video(video_cfg, video)
        seconds = time.perf_counter() - start
        samples = args.bootstrap if task == "vid" else args.vis_bootstrap
        summary[task] = {"dataset": dataset, "bootstrap_samples": samples, "seconds": seconds, "models": task_summary}
        num_videos = len({d["video_id"] for d in DatasetCatalog.get(dataset)})
        printed.append(
            f"{dataset}: {num_videos} held-out videos; [95% bootstrap interval over the videos, "
            f"{samples} redraws]; {seconds / 60:.1f} min\n" + tabulate(rows, headers=headers, tablefmt="pipe")
        )
        videos.append(video)
    os.makedirs(args.output, exist_ok=True)
    with atomic_write(os.path.join(args.output, "results.json")) as f:
        json.dump(summary, f, indent=2)
    print("\n" + "\n\n".join(printed))
    print(f"\nOutputs: models, logs and evaluation results under {os.path.abspath(args.output)}")
    print(f"  results table: {os.path.abspath(os.path.join(args.output, 'results.json'))}")
    for video in videos:
        print(f"  annotated video: {os.path.abspath(video)}")


if __name__ == "__main__":
    main()
