#!/usr/bin/env bash
# The main job: sets up (or reuses) the project environment, generates the toy ImageNet VID and YouTube-VIS
# format datasets if missing, trains the tiny detectors (single-frame, TRoI) and VIS models (MaskTrack R-CNN
# +- TRoI) on the CPU, evaluates them on held-out videos with bootstrap intervals, prints two tables
# and writes an annotated video per task.
# Extra arguments go to tools/quickstart.py (see --help).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source tools/env.sh
exec python tools/quickstart.py "$@"
