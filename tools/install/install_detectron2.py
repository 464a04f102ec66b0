"""Make ``import detectron2`` work in the current environment.

A working detectron2 (one whose ``detectron2.layers`` imports) is used untouched, except
that a fallback ``_C.py`` copied by an earlier version of this script is updated.
Otherwise the Python sources of the PyPI sdist ``pb1-detectron2==0.6`` are
installed: its C++ extension list is emptied (the sdist lacks the C++ sources),
the ``black==21.4b2`` pin (broken with current click) is relaxed, and
``detectron2/_C.py`` is the fallback from ``detectron2_C_fallback.py``.
Run with the environment's Python after torch is installed.

``--check-duplicates`` (run by tools/env.sh every time) only warns when two installed
distributions provide ``detectron2`` (e.g. ``pb1-detectron2`` and Detectron2 main installed
later), saying which one ``import detectron2`` finds and how to keep the other.
"""

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

SDIST = "pb1-detectron2==0.6"
HERE = os.path.dirname(os.path.abspath(__file__))
CONSTRAINTS = os.path.join(HERE, "..", "..", "constraints.txt")
MODULES = ("detectron2.layers", "detectron2.evaluation", "detectron2.engine", "detectron2.model_zoo")


def detectron2_works():
    code = "import " + ", ".join(MODULES)
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def pip(*args):
    subprocess.run([sys.executable, "-m", "pip", *args, "-c", CONSTRAINTS], check=True)


def patch_sources(src):
    setup_py = os.path.join(src, "setup.py")
    with open(setup_py) as f:
        text = f.read()
    patched = text.replace("ext_modules=get_extensions(),", "ext_modules=[],")
    patched = patched.replace('"black==21.4b2",', '"black",')
    if patched == text or "ext_modules=[]" not in patched:
        sys.exit(f"{setup_py}: unexpected layout, cannot empty its extension list")
    with open(setup_py, "w") as f:
        f.write(patched)
    shutil.copy(os.path.join(HERE, "detectron2_C_fallback.py"), os.path.join(src, "detectron2", "_C.py"))


def refresh_fallback(package_dir):
    """Replace ``package_dir/_C.py`` by the current fallback when it is an older copy of it (a
    compiled ``_C`` or another file is left alone). Returns whether it was replaced."""
    installed = os.path.join(package_dir, "_C.py")
    fallback = os.path.join(HERE, "detectron2_C_fallback.py")
    if not os.path.isfile(installed):
        return False
    with open(installed) as f, open(fallback) as g:
        old, new = f.read(), g.read()
    if old == new or not old.startswith('"""Stand-in for ``detectron2._C``'):
        return False
    shutil.copy(fallback, installed)
    return True


def detectron2_distributions(path=None):
    """``[(name, version, files)]`` of the installed distributions (on ``path``, default
    ``sys.path``) that provide the package ``detectron2``: their top_level.txt names it or, without
    one, their name does. ``files``: the absolute paths they installed."""
    found = {}
    for dist in importlib.metadata.distributions(**({} if path is None else {"path": path})):
        name = dist.metadata["Name"]
        top_level = dist.read_text("top_level.txt")
        provides = "detectron2" in top_level.split() if top_level is not None else "detectron2" in name.lower()
        if provides and name not in found:
            files = {os.path.realpath(dist.locate_file(f)) for f in dist.files or ()}
            found[name] = (name, dist.version, files)
    return sorted(found.values())


def duplicates_message(distributions, imported):
    """The warning when more than one of ``distributions`` (of :func:`detectron2_distributions`)
    provides detectron2, None otherwise; ``imported`` is the file ``import detectron2`` loads."""
    if len(distributions) < 2:
        return None
    owners = [name for name, _, files in distributions if imported and os.path.realpath(imported) in files]
    listed = " and ".join(f"{name} {version}" for name, version, _ in distributions)
    found = f"{owners[0]}'s" if owners else "an editable or unlisted install's"
    return (
        f"{len(distributions)} installed distributions provide detectron2 ({listed}); `import detectron2` "
        f"finds {found}, {os.path.dirname(imported or '?')}. To use Detectron2 main (or another build), uninstall "
        f"this project's Python-only copy first: `pip uninstall -y pb1-detectron2`, then install the one you want "
        "again (e.g. `pip install --no-build-isolation -e path/to/detectron2`): removing pb1-detectron2 afterwards "
        "also removes the files the two share."
    )


def check_duplicates():
    spec = importlib.util.find_spec("detectron2")
    message = duplicates_message(detectron2_distributions(), spec.origin if spec else None)
    if message:
        print(f"[env] warning: {message}", file=sys.stderr)


def main():
    if "--check-duplicates" in sys.argv[1:]:
        return check_duplicates()
    if detectron2_works():
        code = "import os, detectron2; print(os.path.dirname(detectron2.__file__))"
        package_dir = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
        if refresh_fallback(package_dir):
            print(f"detectron2: updated the fallback {package_dir}/_C.py")
        print("detectron2: a working install is present, using it untouched")
        return
    with tempfile.TemporaryDirectory() as tmp:
        # Metadata preparation imports torch, hence no build isolation.
        pip("download", "--no-deps", "--no-build-isolation", "--no-binary", ":all:", SDIST, "-d", tmp)
        (archive,) = [f for f in os.listdir(tmp) if re.match(r"pb1.detectron2-0\.6\.tar\.gz$", f)]
        with tarfile.open(os.path.join(tmp, archive)) as tar:
            tar.extractall(tmp, filter="data")
        src = os.path.join(tmp, archive[: -len(".tar.gz")])
        patch_sources(src)
        pip("install", "--no-build-isolation", src)
    if not detectron2_works():
        sys.exit("detectron2 was installed but `import " + ", ".join(MODULES) + "` still fails")
    print("detectron2: installed the Python-only build with the fallback detectron2._C")


if __name__ == "__main__":
    main()
