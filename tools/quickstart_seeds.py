#!/usr/bin/env python
"""
Scores the models trained by the quickstart on toy datasets generated with other seeds (other
videos, same recipe), printing the quickstart's tables for each seed: is TRoI's gain a property
of the method or of one draw of the data?

    python tools/quickstart_seeds.py --seeds 1 2 3 [--output output/quickstart] [--bootstrap 1000]

Each seed's held-out videos are generated under <output>/seeds/<seed>/toy_vid (and toy_vis; as
many as the quickstart's, no training videos) and registered as toy_vid_val_seed<seed> (and
toy_vis_val_seed<seed>); the models are those of <output>/<task>/<model>/model_final.pth for each
task the quickstart ran, evaluated with the quickstart's config overrides.
"""

import argparse
import json
import os
import sys

from detectron2.data import DatasetCatalog
from detectron2.utils.logger import setup_logger
from tabulate import tabulate

from temporal_roi_align.checkpoint import VideoCheckpointer
from temporal_roi_align.data.toy import ensure_toy_vid, ensure_toy_vis, register_toy_vid_split, register_toy_vis_split
from temporal_roi_align.engine import HelpFormatter, VideoTrainer
from temporal_roi_align.utils import atomic_write

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quickstart  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="seeds of the toy datasets to score on")
    parser.add_argument("--output", default="output/quickstart", help="the quickstart's output folder")
    quickstart.add_bootstrap_options(parser)
    return parser.parse_args(argv)


# task: (held-out set of a seed: its root's name, ensure, register), the evaluator's file, the
# model labels, the table's metrics and columns
TASKS = {
    "vid": (
        ("toy_vid", ensure_toy_vid, register_toy_vid_split),
        "coco_instances_results.json",
        quickstart.VID_MODELS,
        {"AP50": "mAP@0.5", "AP50-degraded": "mAP@0.5 degraded frames"},
    ),
    "vis": (
        ("toy_vis", ensure_toy_vis, register_toy_vis_split),
        "results.json",
        quickstart.VIS_MODELS,
        quickstart.VIS_METRICS,
    ),
}


def score_seed(task, trained, seed, args):
    """The quickstart's table of ``task`` on the held-out videos of toy seed ``seed``."""
    (root_name, ensure, register), file_name, labels, metrics = TASKS[task]
    root = ensure(os.path.join(args.output, "seeds", str(seed), root_name), num_train_videos=0, seed=seed)
    dataset = register(f"{root_name}_val_seed{seed}", root, "val")
    predictions = {}
    for name in [m for m in trained[task]["models"] if m in labels]:
        weights = os.path.join(args.output, task, name, "model_final.pth")
        if not os.path.isfile(weights):
            raise SystemExit(f"{weights}: missing; run tools/quickstart.py again")
        cfg = quickstart.config(
            name,
            os.path.join(args.output, "seeds", str(seed), task, name),
            trained["opts"] + ["DATASETS.TEST", (dataset,)],
        )
        model = VideoTrainer.build_model(cfg)
        checkpointer = VideoCheckpointer(model)
        checkpointer.load(weights)
        checkpointer.check_weights(evaluating=True)
        _, predictions[name] = quickstart.test(cfg, model, file_name)
    base = quickstart.RECIPES[task][0]
    samples = args.bootstrap if task == "vid" else args.vis_bootstrap
    intervals = quickstart.vid_intervals if task == "vid" else quickstart.vis_intervals
    summary = intervals(predictions, dataset, samples, seed, base)
    rows = quickstart.table(summary, list(metrics), labels, base, lambda n: [])
    num_videos = len({d["video_id"] for d in DatasetCatalog.get(dataset)})
    printed = (
        f"toy dataset seed {seed}, {task}: {num_videos} held-out videos; [95% bootstrap interval over the "
        f"videos, {samples} redraws]\n" + tabulate(rows, headers=["model", *metrics.values()], tablefmt="pipe")
    )
    return printed, {"dataset": dataset, "bootstrap_samples": samples, "models": summary}


def main(argv=None):
    args = parse_args(argv)
    setup_logger(name="temporal_roi_align")
    setup_logger(output=os.path.join(args.output, "seeds", "log.txt"))
    summary_file = os.path.join(args.output, "results.json")
    if not os.path.isfile(summary_file):
        raise SystemExit(f"{summary_file}: no quickstart results here; run tools/quickstart.py first")
    with open(summary_file) as f:
        trained = json.load(f)
    tasks = [t for t in TASKS if t in trained]
    if not tasks:
        raise SystemExit(f"{summary_file}: the quickstart trained no models")
    printed, scores = [], {}
    for seed in args.seeds:
        for task in tasks:
            text, scores.setdefault(str(seed), {})[task] = score_seed(task, trained, seed, args)
            print(text + "\n")
            printed.append(text)
    with atomic_write(os.path.join(args.output, "seeds", "results.json")) as f:
        json.dump(scores, f, indent=2)
    print("\n\n".join(printed))
    print(f"\nResults: {os.path.abspath(os.path.join(args.output, 'seeds', 'results.json'))}")


if __name__ == "__main__":
    main()
