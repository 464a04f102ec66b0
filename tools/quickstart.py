#!/usr/bin/env python
"""
The quickstart: does temporal aggregation help a detector on frames it cannot read alone?

On the generated toy dataset (ImageNet VID format; about a third of each video's frames are
degraded so that the objects stay visible but their class cannot be told from that frame alone),
it trains on the CPU a tiny single-frame detector and the same detector with Temporal RoI Align,
evaluates both on held-out videos and prints one table: mAP@0.5 overall and on the degraded
frames, each with a 95% bootstrap interval over the videos, and the difference TRoI - single-frame
with its own (paired) interval. It also writes an annotated video of one held-out video.

Recipe (the same schedule for every model, so that the rows differ only in the RoI features):
a base single-frame detector is trained for --base-iters iterations; each model then starts from
it and trains --finetune-iters more (the single-frame row too). Starting TRoI from a detector
that already localises the objects lets its temporal aggregation learn within minutes on 2 cores.
"""
import argparse
import json
import os
import time

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger
from detectron2.utils.visualizer import Visualizer
from tabulate import tabulate
from tqdm import tqdm

from temporal_roi_align.data.toy import ensure_toy_vid
from temporal_roi_align.engine import VideoTrainer, check_output_dir, setup_cfg
from temporal_roi_align.evaluation.bootstrap import AP50Table, bootstrap_ap50, percentile_interval
from temporal_roi_align.model_zoo import get_config_file
from temporal_roi_align.postprocessing import seq_nms_arrays
from temporal_roi_align.utils import atomic_write

MODELS = {"single_frame": "Single-frame (ROIAlign)", "troi": "Temporal RoI Align", "selsa": "SELSA",
          "selsa_troi": "SELSA + TRoI", "fgfa": "FGFA", "dff": "DFF"}
BASELINE = "single_frame"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["single_frame", "troi"], choices=sorted(MODELS))
    parser.add_argument("--base-iters", type=int, default=400, help="iterations of the base single-frame detector")
    parser.add_argument("--finetune-iters", type=int, default=150, help="iterations of each model from the base")
    parser.add_argument("--seed", type=int, default=0, help="seed of the toy dataset")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap redraws of the videos")
    parser.add_argument("--seq-nms", action="store_true", help="add a row: the TRoI detections after Seq-NMS")
    parser.add_argument("--output", default="output/quickstart", help="where models, results and the video go")
    parser.add_argument("--video-model", default="troi", help="model that annotates the video")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides for every model, KEY VALUE ...")
    return parser.parse_args(argv)


def config(name, output_dir, opts, iters, weights=""):
    opts = ["OUTPUT_DIR", output_dir, "MODEL.WEIGHTS", weights, "SOLVER.MAX_ITER", iters,
            "SOLVER.STEPS", (int(iters * 0.8),), "SOLVER.WARMUP_ITERS", min(30, iters // 10), *opts]
    return setup_cfg(get_config_file(f"toy/{name}.yaml"), opts)


def train(cfg):
    """Trains ``cfg`` without evaluation (DATASETS.TEST emptied); returns the seconds taken."""
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED)
    start = time.perf_counter()
    train_cfg = cfg.clone()
    train_cfg.defrost()
    train_cfg.DATASETS.TEST = ()
    check_output_dir(cfg.OUTPUT_DIR, resume=False, eval_only=False, overwrite=True)  # a new run replaces the last
    trainer = VideoTrainer(train_cfg)
    # From the base detector, the temporal parts (TRoI's attention, SELSA's modules) start untrained.
    trainer.resume_or_load(resume=False, allow_partial_weights=True)
    trainer.train()
    return time.perf_counter() - start, trainer.model


def evaluate(cfg, model):
    """VIDEvaluator's results on the test set and its detections (COCO result format)."""
    (dataset,) = cfg.DATASETS.TEST
    results = VideoTrainer.test(cfg, model)["bbox"]
    with open(os.path.join(cfg.OUTPUT_DIR, "inference", dataset, "coco_instances_results.json")) as f:
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
        boxes = [np.array([[x, y, x + w, y + h] for x, y, w, h in (det["bbox"] for det in f)]).reshape(-1, 4) for f in frames]
        keep, scores = seq_nms_arrays(boxes, [np.array([d["score"] for d in f]) for f in frames],
                                      [np.array([d["category_id"] for d in f], dtype=np.int64) for f in frames])
        for f, k, s in zip(frames, keep, scores):
            out += [dict(f[i], score=float(score)) for i, score in zip(k, s)]
    return out


def interval_table(detections, dataset, samples, seed):
    """Rows of AP50 and degraded-frame AP50 with 95% intervals, and the paired differences to
    the single-frame row; returns (rows, summary)."""
    dicts = DatasetCatalog.get(dataset)
    metadata = MetadataCatalog.get(dataset)
    degraded = {d["image_id"] for d in dicts if metadata.frame_subsets["degraded"](d)}
    names = list(detections)
    tables = []
    for name in names:
        tables.append(AP50Table(dicts, detections[name], metadata.thing_classes))
        tables.append(AP50Table(dicts, detections[name], metadata.thing_classes, image_ids=degraded))
    draws = bootstrap_ap50(tables, samples=samples, seed=seed)
    summary, rows = {}, []
    for j, name in enumerate(names):
        overall, on_degraded = tables[2 * j].ap50(), tables[2 * j + 1].ap50()
        summary[name] = {
            "AP50": overall, "AP50-ci95": percentile_interval(draws[:, 2 * j]),
            "AP50-degraded": on_degraded, "AP50-degraded-ci95": percentile_interval(draws[:, 2 * j + 1]),
        }
    if BASELINE in names:
        b = names.index(BASELINE)
        for j, name in enumerate(names):
            if name == BASELINE:
                continue
            summary[name]["minus_single_frame"] = {
                "AP50": tables[2 * j].ap50() - tables[2 * b].ap50(),
                "AP50-ci95": percentile_interval(draws[:, 2 * j] - draws[:, 2 * b]),
                "AP50-degraded": tables[2 * j + 1].ap50() - tables[2 * b + 1].ap50(),
                "AP50-degraded-ci95": percentile_interval(draws[:, 2 * j + 1] - draws[:, 2 * b + 1]),
            }
    return summary


def format_ci(value, interval):
    return f"{value:.1f} [{interval[0]:.1f}, {interval[1]:.1f}]"


def write_annotated_video(cfg, path):
    from temporal_roi_align.predictor import VideoPredictor

    (dataset,) = cfg.DATASETS.TEST
    dicts = DatasetCatalog.get(dataset)
    first_video = dicts[0]["video_id"]
    files = [d["file_name"] for d in sorted(dicts, key=lambda d: d["frame_id"]) if d["video_id"] == first_video]
    frames = [cv2.imread(f) for f in files]
    predictor = VideoPredictor(cfg.clone())
    metadata = MetadataCatalog.get(dataset)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 5, (width, height))
    for frame, instances in tqdm(zip(frames, predictor.predict_video(frames)), total=len(frames), desc="video"):
        instances = instances[instances.scores > 0.5]
        drawn = Visualizer(frame[:, :, ::-1], metadata).draw_instance_predictions(instances)
        writer.write(drawn.get_image()[:, :, ::-1])
    writer.release()


def main(argv=None):
    args = parse_args(argv)
    setup_logger(name="temporal_roi_align")
    setup_logger(output=os.path.join(args.output, "log.txt"))
    ensure_toy_vid(seed=args.seed)
    models = [BASELINE] + [m for m in args.models if m != BASELINE]

    base = config(BASELINE, os.path.join(args.output, "base"), args.opts, args.base_iters)
    base_seconds, _ = train(base)
    base_weights = os.path.join(base.OUTPUT_DIR, "model_final.pth")
    seconds, detections, results, cfgs = {}, {}, {}, {}
    for name in models:
        cfg = config(name, os.path.join(args.output, name), args.opts, args.finetune_iters, base_weights)
        seconds[name], model = train(cfg)
        results[name], detections[name] = evaluate(cfg, model)
        cfgs[name] = cfg
    (dataset,) = base.DATASETS.TEST
    if args.seq_nms and "troi" in detections:
        detections["troi_seq_nms"] = with_seq_nms(detections["troi"], DatasetCatalog.get(dataset))
    summary = interval_table(detections, dataset, args.bootstrap, args.seed)

    labels = {**MODELS, "troi_seq_nms": "Temporal RoI Align + Seq-NMS"}
    trained_as = {name: name for name in models} | {"troi_seq_nms": "troi"}
    rows = []
    for name, s in summary.items():
        s["train_seconds"] = base_seconds + seconds[trained_as[name]]
        s["AP"] = results[name]["AP"] if name in results else None
        rows.append([labels[name], format_ci(s["AP50"], s["AP50-ci95"]),
                     format_ci(s["AP50-degraded"], s["AP50-degraded-ci95"]),
                     "" if s["AP"] is None else f"{s['AP']:.1f}", f"{s['train_seconds']:.0f}"])
    for name, s in summary.items():
        if "minus_single_frame" in s:
            d = s["minus_single_frame"]
            rows.append([f"{labels[name]} - single-frame", format_ci(d["AP50"], d["AP50-ci95"]),
                         format_ci(d["AP50-degraded"], d["AP50-degraded-ci95"]), "", ""])
    os.makedirs(args.output, exist_ok=True)
    with atomic_write(os.path.join(args.output, "results.json")) as f:
        json.dump({"toy_seed": args.seed, "bootstrap_samples": args.bootstrap, "models": summary}, f, indent=2)

    video_model = args.video_model if args.video_model in cfgs else models[-1]
    cfg = cfgs[video_model].clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    video_path = os.path.join(args.output, f"{video_model}_val_video.mp4")
    write_annotated_video(cfg, video_path)

    num_videos = len({d["video_id"] for d in DatasetCatalog.get(dataset)})
    print()
    print(f"{dataset}: {num_videos} held-out videos; [95% bootstrap interval over the videos, "
          f"{args.bootstrap} redraws]")
    print(tabulate(rows, headers=["model", "mAP@0.5", "mAP@0.5 degraded frames", "AP@[.5:.95]", "train s"],
                   tablefmt="pipe"))
    print(f"\nOutputs: models, logs and evaluation results under {os.path.abspath(args.output)}")
    print(f"  results table: {os.path.abspath(os.path.join(args.output, 'results.json'))}")
    print(f"  annotated video: {os.path.abspath(video_path)}")


if __name__ == "__main__":
    main()
