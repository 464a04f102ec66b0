#!/usr/bin/env bash
# The test suite: sets up (or reuses) the project environment, then runs pytest on the CPU.
# Extra arguments go to pytest, e.g. `bash tools/run_tests.sh -k pooler`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source tools/env.sh
exec python -m pytest tests -q "$@"
