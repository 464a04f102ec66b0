#!/usr/bin/env python
"""
The quickstart: train the tiny single-frame and TRoI detectors on the generated toy dataset
(ImageNet VID format) on the CPU, evaluate both on its held-out videos, print one table
(mAP@0.5 overall and on the degraded frames) and write an annotated video of one held-out video.
"""
import argparse
import json
import os
import time

import cv2
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger
from detectron2.utils.visualizer import Visualizer
from tabulate import tabulate
from tqdm import tqdm

from temporal_roi_align.data.toy import ensure_toy_vid
from temporal_roi_align.engine import VideoTrainer, setup_cfg
from temporal_roi_align.model_zoo import get_config_file
from temporal_roi_align.predictor import VideoPredictor
from temporal_roi_align.utils import atomic_write

MODELS = {"single_frame": "Single-frame (ROIAlign)", "troi": "Temporal RoI Align", "selsa": "SELSA",
          "selsa_troi": "SELSA + TRoI"}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["single_frame", "troi"], choices=sorted(MODELS))
    parser.add_argument("--iters", type=int, default=None, help="training iterations (default: the config's)")
    parser.add_argument("--output", default="output/quickstart", help="where models, results and the video go")
    parser.add_argument("--video-model", default="troi", help="model that annotates the video")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides for every model, KEY VALUE ...")
    return parser.parse_args()


def train_and_evaluate(name, args):
    opts = ["OUTPUT_DIR", os.path.join(args.output, name), *args.opts]
    if args.iters is not None:
        opts += ["SOLVER.MAX_ITER", args.iters, "SOLVER.STEPS", (int(args.iters * 0.8),)]
    cfg = setup_cfg(get_config_file(f"toy/{name}.yaml"), opts)
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED)
    start = time.perf_counter()
    # Trained without DATASETS.TEST, so that the evaluation below is the only one.
    train_cfg = cfg.clone()
    train_cfg.defrost()
    train_cfg.DATASETS.TEST = ()
    trainer = VideoTrainer(train_cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    train_seconds = time.perf_counter() - start
    # DefaultTrainer.test returns the one test dataset's results unwrapped.
    results = VideoTrainer.test(cfg, trainer.model)
    return cfg, results["bbox"], train_seconds


def write_annotated_video(cfg, path):
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


def main():
    args = parse_args()
    setup_logger(name="temporal_roi_align")
    setup_logger(output=os.path.join(args.output, "log.txt"))
    ensure_toy_vid()
    rows, summary, cfgs = [], {}, {}
    for name in args.models:
        cfg, bbox, seconds = train_and_evaluate(name, args)
        cfgs[name] = cfg
        summary[name] = {**bbox, "train_seconds": seconds}
        rows.append([MODELS[name], bbox["AP50"], bbox.get("AP50-degraded", float("nan")), bbox["AP"], f"{seconds:.0f}"])
    with atomic_write(os.path.join(args.output, "results.json")) as f:
        json.dump(summary, f, indent=2)
    video_model = args.video_model if args.video_model in cfgs else args.models[-1]
    cfg = cfgs[video_model].clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    video_path = os.path.join(args.output, f"{video_model}_val_video.mp4")
    write_annotated_video(cfg, video_path)

    print()
    print(tabulate(rows, headers=["model", "mAP@0.5", "mAP@0.5 degraded frames", "AP@[.5:.95]", "train s"],
                   floatfmt=".1f", tablefmt="pipe"))
    print(f"\nOutputs: models, logs and evaluation results under {os.path.abspath(args.output)}")
    print(f"  results table: {os.path.abspath(os.path.join(args.output, 'results.json'))}")
    print(f"  annotated video: {os.path.abspath(video_path)}")


if __name__ == "__main__":
    main()
