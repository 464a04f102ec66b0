#!/usr/bin/env bash
# The test suite: sets up (or reuses) the project environment, checks lint and formatting (ruff,
# configured in pyproject.toml; `TRA_SKIP_LINT=1` skips it), then runs pytest on the CPU in
# $TRA_TEST_WORKERS processes (pytest-xdist; default 2), one thread each unless OMP_NUM_THREADS
# says otherwise. Extra arguments go to pytest, e.g. `bash tools/run_tests.sh -k pooler`
# (`-n 0`: one process).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source tools/env.sh
if [ -z "${TRA_SKIP_LINT:-}" ]; then
    ruff check --quiet . || { echo "lint: fix the above (ruff check --fix .)" >&2; exit 1; }
    ruff format --check --quiet . || { echo "format: run ruff format ." >&2; exit 1; }
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec python -m pytest tests -q -n "${TRA_TEST_WORKERS:-2}" "$@"
