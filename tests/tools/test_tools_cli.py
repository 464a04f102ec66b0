"""The command line of every tool: --help with the defaults and the usage examples as written,
--import of the user's module (in every process)."""

import argparse
import ast
import glob
import os
import subprocess
import sys

import pytest
from detectron2.data import DatasetCatalog

from temporal_roi_align.engine import HelpFormatter, import_modules

from helpers import REPO, load_script, load_tool

TOOLS = sorted(glob.glob(os.path.join(REPO, "tools", "*.py")))
# The tools that look up datasets by name.
WITH_IMPORT = {"check_dataset.py", "demo_video.py", "lazyconfig_train_net.py", "run_ablation.py", "train_net.py"}
WITH_IMPORT |= {"visualize_troi.py", "export_model.py"}


class _Parsed(Exception):
    pass


def tool_parser(path, monkeypatch):
    """The parser that the tool builds, caught when it parses its arguments."""
    tool = load_script(path)
    caught = []

    def catch(parser, *args, **kwargs):
        caught.append(parser)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_intermixed_args", catch)
    with pytest.raises(_Parsed):
        (tool.parse_args if hasattr(tool, "parse_args") else tool.main)([])
    return tool, caught[0]


def subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.values()


@pytest.mark.parametrize("path", TOOLS, ids=os.path.basename)
def test_help_shows_the_defaults_and_the_examples_as_written(path, monkeypatch):
    tool, parser = tool_parser(path, monkeypatch)
    for p in (parser, *subparsers(parser)):
        assert p.formatter_class is HelpFormatter
        text = p.format_help()
        for action in p._actions:
            default = action.default
            if action.help and not isinstance(default, bool) and default not in (None, "", [], argparse.SUPPRESS):
                assert f"(default: {default})" in " ".join(text.split()), (action.dest, default)
    assert tool.__doc__.strip() in parser.format_help()  # its examples, line for line
    if os.path.basename(path) == "lazyconfig_train_net.py":  # lazy-config examples, not Detectron2's yacs ones
        assert "train.init_checkpoint=" in parser.format_help() and "MODEL.WEIGHTS" not in parser.format_help()
    assert ("--import MODULE" in parser.format_help()) == (os.path.basename(path) in WITH_IMPORT)


def test_the_shared_formatter_leaves_out_defaults_that_say_nothing():
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter, description="a\n    b  c")
    parser.add_argument("--size", type=int, default=0, help="size")
    parser.add_argument("--flag", action="store_true", help="flag")
    parser.add_argument("--name", help="name")
    text = parser.format_help()
    assert "a\n    b  c" in text and "size (default: 0)" in text
    assert "flag\n" in text and "name\n" in text and "default: None" not in text and "default: False" not in text


@pytest.mark.parametrize("path", TOOLS, ids=os.path.basename)
def test_the_docstring_is_the_text_written(path):
    """A backslash at the end of a docstring line (a shell continuation in an example) must be
    written twice: once, it joins the line to the next one."""
    with open(path) as f:
        source = f.read()
    literal = ast.get_source_segment(source, ast.parse(source).body[0].value)
    assert load_script(path).__doc__ == literal[3:-3].replace("\\\\", "\\")


def test_visualize_troi_example_reads_the_model_the_quickstart_writes():
    output = load_tool("quickstart").parse_args([]).output
    # The quickstart trains each model into <output>/<task>/<model>.
    example = f"{output}/vid/troi/model_final.pth"
    assert example in load_tool("visualize_troi").__doc__


# ---- --import -------------------------------------------------------------------------------------------


def test_import_registers_the_users_datasets(tmp_path, monkeypatch):
    (tmp_path / "cli_user_datasets.py").write_text(
        "from detectron2.data import DatasetCatalog\nDatasetCatalog.register('cli_user_data', lambda: [])\n"
    )
    monkeypatch.chdir(tmp_path)  # found in the current folder, as `python -m` finds modules
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        import_modules(["cli_user_datasets"])
        assert "cli_user_data" in DatasetCatalog.list()
        import_modules(["cli_user_datasets"])  # again: nothing happens (every process of --num-gpus N runs it)
    finally:
        DatasetCatalog.remove("cli_user_data")
        sys.modules.pop("cli_user_datasets", None)


def test_import_errors_name_the_module(tmp_path, monkeypatch):
    (tmp_path / "cli_broken.py").write_text("import os\n\nraise RuntimeError('no data here')\n")
    (tmp_path / "cli_needs.py").write_text("import cli_not_installed_anywhere\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"--import cli_missing: no module 'cli_missing' on PYTHONPATH or in the"):
        import_modules(["cli_missing"])
    with pytest.raises(SystemExit, match=r"--import cli_missing\.sub: no module 'cli_missing'"):
        import_modules(["cli_missing.sub"])
    with pytest.raises(SystemExit) as e:
        import_modules(["cli_broken"])
    assert (
        str(e.value)
        == f"--import cli_broken: importing it failed at {tmp_path}/cli_broken.py:3: RuntimeError: no data here"
    )
    with pytest.raises(SystemExit, match="--import cli_needs: importing it failed at .*cli_needs.py:1: ModuleNotFound"):
        import_modules(["cli_needs"])


def test_train_net_stops_on_a_module_it_cannot_import():
    proc = subprocess.run(
        [sys.executable, "tools/train_net.py", "--import", "cli_missing", "--config-file", "configs/toy/troi.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "--import cli_missing: no module 'cli_missing'" in proc.stderr and "Traceback" not in proc.stderr


def test_run_ablation_passes_import_to_every_run(tmp_path, monkeypatch, capsys):
    (tmp_path / "cli_ablation_data.py").write_text("")
    monkeypatch.chdir(tmp_path)
    run_ablation = load_tool("run_ablation")
    ablation = os.path.join(REPO, "configs", "ablations", "topk_K.py")
    run_ablation.main([ablation, "--toy", "--dry-run", "--only", "K=2", "--import", "cli_ablation_data"])
    (command,) = [line for line in capsys.readouterr().out.splitlines() if "lazyconfig_train_net.py" in line]
    assert "--import=cli_ablation_data" in command.split()
