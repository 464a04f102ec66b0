# Source this file: it creates or reuses the project virtual environment (.venv, or $TRA_VENV)
# and installs what is missing. A second run with nothing changed installs nothing.
_tra_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_tra_venv="${TRA_VENV:-$_tra_root/.venv}"
_tra_setup() {
    set -e
    if [ ! -x "$_tra_venv/bin/python" ]; then
        local site_flag=""
        # A system Python (not itself a venv) that already has a working detectron2 lends it to the venv.
        if python3 -c "import sys, detectron2.layers; sys.exit(sys.prefix != sys.base_prefix)" >/dev/null 2>&1; then
            site_flag="--system-site-packages"
        fi
        echo "[env] creating $_tra_venv $site_flag"
        python3 -m venv $site_flag "$_tra_venv"
    fi
    local stamp="$_tra_venv/.tra-installed"
    local want
    want="$(cat "$_tra_root/constraints.txt" "$_tra_root/requirements.txt" "$_tra_root/setup.py" \
        "$_tra_root"/tools/install/* | sha256sum | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
    local py="$_tra_venv/bin/python"
    echo "[env] installing dependencies into $_tra_venv (torch comes from local disk, about a minute)"
    "$py" -m pip install -q --upgrade "pip<26.2" -c "$_tra_root/constraints.txt"
    "$py" -m pip install -q -r "$_tra_root/requirements.txt" -c "$_tra_root/constraints.txt"
    "$py" "$_tra_root/tools/install/install_detectron2.py"
    "$py" -m pip install -q --no-build-isolation --no-deps -e "$_tra_root"
    "$py" -c "import detectron2.layers, detectron2.evaluation, detectron2.engine, detectron2.model_zoo, temporal_roi_align"
    echo "$want" > "$stamp"
    echo "[env] ready: $_tra_venv"
}
( _tra_setup ) || { echo "[env] set-up failed (see the messages above)" >&2; return 1 2>/dev/null || exit 1; }
# Every time: two installs of detectron2 (e.g. pb1-detectron2 and Detectron2 main added later) are named.
"$_tra_venv/bin/python" "$_tra_root/tools/install/install_detectron2.py" --check-duplicates || true
# The compiled operator of Most Similar RoI Align (optional; docs/temporal_roi_align.md): built
# again when its sources, the installed environment or the C++ compiler ($CXX, default c++)
# change. Without a compiler, or when the build fails, the PyTorch path runs.
_tra_build_ops() {
    local stamp="$_tra_venv/.tra-ops-built" want
    want="$( (cat "$_tra_venv/.tra-installed" "$_tra_root"/projects/TemporalRoIAlign/temporal_roi_align/layers/csrc/*
        command -v "${CXX:-c++}" || echo "no compiler") | sha256sum | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
    "$_tra_venv/bin/python" "$_tra_root/tools/build_ops.py" && echo "$want" > "$stamp"
}
_tra_build_ops || echo "[env] going on without the compiled operator" >&2
export PATH="$_tra_venv/bin:$PATH"
unset -f _tra_setup _tra_build_ops
# detectron2 0.6 scripts its ops with torch.jit, which this torch deprecates loudly on every import.
export PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore:\`torch.jit.script\` is deprecated:FutureWarning"
