#!/usr/bin/env python
"""
Scores the detectors trained by the quickstart on toy datasets generated with other seeds (other
videos, same recipe), printing the quickstart's detection table for each seed: is TRoI's gain a
property of the method or of one draw of the data?

    python tools/quickstart_seeds.py --seeds 1 2 3 [--output output/quickstart] [--bootstrap 1000]

Each seed's held-out videos are generated under <output>/seeds/<seed>/toy_vid (as many as the
quickstart's; no training videos) and registered as toy_vid_val_seed<seed>; the models are those
of <output>/vid/<model>/model_final.pth, evaluated with the quickstart's config overrides.
"""

import argparse
import json
import os
import sys

from detectron2.data import DatasetCatalog
from tabulate import tabulate

from temporal_roi_align.checkpoint import VideoCheckpointer
from temporal_roi_align.data.toy import ensure_toy_vid, register_toy_vid_split
from temporal_roi_align.engine import VideoTrainer
from temporal_roi_align.utils import atomic_write

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quickstart  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="seeds of the toy datasets to score on")
    parser.add_argument("--output", default="output/quickstart", help="the quickstart's output folder")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap redraws of the videos")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    summary_file = os.path.join(args.output, "results.json")
    if not os.path.isfile(summary_file):
        raise SystemExit(f"{summary_file}: no quickstart results here; run tools/quickstart.py first")
    with open(summary_file) as f:
        trained = json.load(f)
    if "vid" not in trained:
        raise SystemExit(f"{summary_file}: the quickstart did not train the detection models (--task vid or all)")
    models = [m for m in trained["vid"]["models"] if m in quickstart.VID_MODELS]
    base = quickstart.RECIPES["vid"][0]
    printed, scores = {}, {}
    for seed in args.seeds:
        root = ensure_toy_vid(os.path.join(args.output, "seeds", str(seed), "toy_vid"), num_train_videos=0, seed=seed)
        dataset = register_toy_vid_split(f"toy_vid_val_seed{seed}", root, "val")
        detections = {}
        for name in models:
            weights = os.path.join(args.output, "vid", name, "model_final.pth")
            if not os.path.isfile(weights):
                raise SystemExit(f"{weights}: missing; run tools/quickstart.py again")
            cfg = quickstart.config(
                name,
                os.path.join(args.output, "seeds", str(seed), name),
                trained["opts"] + ["DATASETS.TEST", (dataset,)],
            )
            model = VideoTrainer.build_model(cfg)
            checkpointer = VideoCheckpointer(model)
            checkpointer.load(weights)
            checkpointer.check_weights(evaluating=True)
            _, detections[name] = quickstart.test(cfg, model, "coco_instances_results.json")
        summary = quickstart.vid_intervals(detections, dataset, args.bootstrap, seed, base)
        rows = quickstart.table(summary, ["AP50", "AP50-degraded"], quickstart.VID_MODELS, base, lambda n: [])
        num_videos = len({d["video_id"] for d in DatasetCatalog.get(dataset)})
        printed[seed] = (
            f"toy dataset seed {seed}: {num_videos} held-out videos; [95% bootstrap interval over the "
            f"videos, {args.bootstrap} redraws]\n"
            + tabulate(rows, headers=["model", "mAP@0.5", "mAP@0.5 degraded frames"], tablefmt="pipe")
        )
        print(printed[seed] + "\n")
        scores[str(seed)] = {"dataset": dataset, "bootstrap_samples": args.bootstrap, "models": summary}
    with atomic_write(os.path.join(args.output, "seeds", "results.json")) as f:
        json.dump(scores, f, indent=2)
    print("\n\n".join(printed.values()))
    print(f"\nResults: {os.path.abspath(os.path.join(args.output, 'seeds', 'results.json'))}")


if __name__ == "__main__":
    main()
