#!/usr/bin/env bash
# The main job: sets up (or reuses) the project environment, generates the toy ImageNet-VID-format
# dataset if missing, trains the tiny single-frame and TRoI detectors on the CPU, evaluates both
# on held-out videos, prints one table and writes an annotated video.
# Extra arguments go to tools/quickstart.py (see --help).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source tools/env.sh
exec python tools/quickstart.py "$@"
