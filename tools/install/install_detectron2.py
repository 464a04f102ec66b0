"""Make ``import detectron2`` work in the current environment.

A working detectron2 (one whose ``detectron2.layers`` imports) is used untouched, except
that a fallback ``_C.py`` copied by an earlier version of this script is updated.
Otherwise the Python sources of the PyPI sdist ``pb1-detectron2==0.6`` are
installed: its C++ extension list is emptied (the sdist lacks the C++ sources),
the ``black==21.4b2`` pin (broken with current click) is relaxed, and
``detectron2/_C.py`` is the fallback from ``detectron2_C_fallback.py``.
Run with the environment's Python after torch is installed.
"""

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


def main():
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
