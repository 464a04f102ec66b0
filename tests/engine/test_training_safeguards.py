"""Nothing lost, nothing silently wrong in training and evaluation runs: an output folder locked
against a second run and cleared of killed saves' leftovers, atomic checkpoints, a full disk
that says so, resuming from the newest whole checkpoint with metrics.json trimmed to it, weights
that must fit the model, a finished run's folder that is not overwritten, the iterations done
saved when the training data fails, an evaluation with nothing to evaluate refused, lazy
overrides checked, ablation results keyed by their overrides."""

import errno
import fcntl
import json
import logging
import os
import re
import subprocess
import sys
import time

import pytest
import torch
from detectron2.modeling import build_model

from temporal_roi_align.checkpoint import CheckpointError, VideoCheckpointer, checkpoint_problem
from temporal_roi_align.config_checks import ConfigError
from temporal_roi_align.engine import (
    VideoTrainer,
    check_output_dir,
    errors_as_messages,
    launch,
    lock_output_dir,
    setup_cfg,
    trim_metrics,
)
from temporal_roi_align.engine import trainer as trainer_module
from temporal_roi_align.model_zoo import get_config_file

from helpers import REPO, load_tool
from helpers.configs import TINY_TRAINING
from helpers.full_disk import fill_disk

TINY = [*TINY_TRAINING, "INPUT.SUPPORT.NUM_TEST", 2, "DATASETS.TEST", ()]


train_net = load_tool("train_net")
TROI = get_config_file("toy/troi.yaml")


def toy_cfg(variant, output_dir, *opts):
    return setup_cfg(get_config_file(f"toy/{variant}.yaml"), ["OUTPUT_DIR", str(output_dir), *TINY, *opts])


def save_weights(variant, path, keep=lambda key: True, *opts):
    """The state dict of a fresh toy model, as a weights file holding the keys ``keep`` selects."""
    cfg = setup_cfg(get_config_file(f"toy/{variant}.yaml"), list(opts))
    state = {k: v for k, v in build_model(cfg).state_dict().items() if keep(k)}
    torch.save({"model": state}, str(path))
    return str(path)


# ---- the output folder of a finished run ----


def test_training_into_a_finished_run_is_refused(vid_toy_datasets_env, tmp_path):
    (tmp_path / "model_final.pth").write_bytes(b"trained for days")
    (tmp_path / "metrics.json").write_text('{"iteration": 41249}\n')
    args = train_net.argument_parser().parse_args(  # were it to run: no iteration, no evaluation
        [
            "--config-file",
            get_config_file("toy/troi.yaml"),
            "OUTPUT_DIR",
            str(tmp_path),
            "SOLVER.MAX_ITER",
            "1",
            "SOLVER.STEPS",
            "()",
            "SOLVER.WARMUP_ITERS",
            "0",
            "DATASETS.TEST",
            "()",
        ]
    )
    with pytest.raises(
        SystemExit, match=rf"OUTPUT_DIR {tmp_path} holds a finished run.*--resume.*new OUTPUT_DIR.*--overwrite"
    ):
        train_net.main(args)
    assert (tmp_path / "model_final.pth").read_bytes() == b"trained for days"
    assert sorted(os.listdir(tmp_path)) == [".lock", "metrics.json", "model_final.pth"]  # not even a config.yaml


def test_finished_run_folder_with_resume_eval_only_or_overwrite(vid_toy_datasets_env, tmp_path):
    from argparse import Namespace

    (tmp_path / "model_final.pth").write_bytes(b"x")
    for flags in (dict(resume=True, eval_only=False), dict(resume=False, eval_only=True)):
        check_output_dir(str(tmp_path), overwrite=False, **flags)
    (tmp_path / "metrics.json").write_text("{}\n")
    (tmp_path / "model_0000099.pth").write_bytes(b"y")
    args = train_net.argument_parser().parse_args(
        ["--config-file", get_config_file("toy/troi.yaml"), "--overwrite", "OUTPUT_DIR", str(tmp_path)]
    )
    assert isinstance(args, Namespace) and args.overwrite
    setup_cfg(args.config_file, args.opts, args=args)
    names = set(os.listdir(tmp_path))
    assert {"model_final.pth", "metrics.json"}.isdisjoint(names) and "model_0000099.pth" in names


# ---- the output folder: one run at a time, leftovers of killed saves removed ----

HOLD_LOCK = """
import fcntl, sys
lock = open(sys.argv[1], "a+")
fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
lock.write("pid 4242 on gpu-node-3 since 2024-05-01 10:00:00: tools/train_net.py --config-file a.yaml\\n")
lock.flush()
print("locked", flush=True)
sys.stdin.read()
"""


def hold_lock(folder):
    """A process that holds ``folder``'s lock as a run does, until killed."""
    os.makedirs(folder, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, os.path.join(folder, ".lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline() == "locked\n"
    return holder


def test_a_second_run_into_a_folder_in_use_is_refused(vid_toy_datasets_env, tmp_path):
    holder = hold_lock(tmp_path)
    opts = ["OUTPUT_DIR", str(tmp_path), *map(str, TINY), "DATASETS.TEST", "('toy_vid_val',)"]
    in_use = (
        rf"OUTPUT_DIR {tmp_path} is in use by another run \(pid 4242 on gpu-node-3 since 2024-05-01 10:00:00: "
        r"tools/train_net.py --config-file a.yaml\): two runs into one folder overwrite each other's checkpoints"
    )
    for flags in ([], ["--eval-only"]):
        with pytest.raises(SystemExit, match=in_use):
            train_net.main(train_net.argument_parser().parse_args([*flags, "--config-file", TROI, *opts]))
    assert sorted(os.listdir(tmp_path)) == [".lock"]  # no config.yaml, no log.txt
    # The holder dies (however: a crash, kill -9): the OS releases its lock.
    holder.kill()
    holder.wait()
    assert lock_output_dir(str(tmp_path)) is None
    assert lock_output_dir(str(tmp_path)) is None  # this process holds it already
    assert (tmp_path / ".lock").read_text().startswith(f"pid {os.getpid()} on ")
    with open(tmp_path / ".lock") as other, pytest.raises(BlockingIOError):
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held for other processes


def _check_output_dir_in_each_rank(output_dir, results):
    from detectron2.utils import comm

    try:
        check_output_dir(output_dir, resume=False, eval_only=False, overwrite=False)
        outcome = "passed"
    except SystemExit as e:
        outcome = str(e.code)
    with open(os.path.join(results, f"rank{comm.get_rank()}"), "w") as f:
        f.write(outcome)


def test_the_lock_with_two_processes(tmp_path):
    """--num-gpus 2: the main process takes the lock; when another run holds it, every process
    stops (none waits for the others), the main one with the message."""
    results = tmp_path / "results"
    results.mkdir()
    holder = hold_lock(tmp_path / "out")
    try:
        start = time.perf_counter()
        launch(_check_output_dir_in_each_rank, 2, dist_url="auto", args=(str(tmp_path / "out"), str(results)))
        assert time.perf_counter() - start < 120
    finally:
        holder.kill()
        holder.wait()
    assert "is in use by another run (pid 4242" in (results / "rank0").read_text()
    assert (results / "rank1").read_text() == "1"  # stops too, leaving the message to the main process


def test_leftovers_of_killed_saves_are_removed_at_the_start(vid_toy_datasets_env, tmp_path):
    leftovers = [
        tmp_path / ".model_final.pth.k3x9_a2b.tmp",
        tmp_path / "inference" / "toy_vid_val" / ".vid_results.json.0a1b2c3d.tmp",
    ]
    for path in leftovers:
        os.makedirs(path.parent, exist_ok=True)
        path.write_bytes(b"x" * 2**20)
    (tmp_path / "model_0000009.pth").write_bytes(b"kept")
    args = train_net.argument_parser().parse_args(["--config-file", TROI, "--resume", "OUTPUT_DIR", str(tmp_path)])
    setup_cfg(args.config_file, args.opts, args=args)
    assert not any(path.exists() for path in leftovers) and (tmp_path / "model_0000009.pth").exists()
    assert (
        f"Removed 2 temporary files (2.0 MiB) of saves killed mid-write from {tmp_path}: "
        ".model_final.pth.k3x9_a2b.tmp, inference/toy_vid_val/.vid_results.json.0a1b2c3d.tmp"
    ) in (tmp_path / "log.txt").read_text()


# ---- checkpoints: written atomically, resumed from the newest whole one ----


def test_checkpoints_are_written_atomically(vid_toy_datasets_env, tmp_path, monkeypatch):
    trainer = VideoTrainer(toy_cfg("single_frame", tmp_path))
    trainer.checkpointer.save("model_final")
    before = (tmp_path / "model_final.pth").read_bytes()
    real_save = torch.save

    def interrupted(obj, f, *args, **kwargs):
        f.write(before[: len(before) // 3])
        raise KeyboardInterrupt  # the job killed mid-write

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.checkpointer.save("model_final")
    monkeypatch.setattr(torch, "save", real_save)
    assert (tmp_path / "model_final.pth").read_bytes() == before
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_a_full_disk_during_a_save_says_so_and_what_is_kept(vid_toy_datasets_env, tmp_path, monkeypatch):
    trainer = VideoTrainer(toy_cfg("single_frame", tmp_path))
    trainer.checkpointer.save("model_0000004", iteration=4)
    before = (tmp_path / "model_0000004.pth").read_bytes()
    fill_disk(monkeypatch)
    with pytest.raises(OSError) as e:
        trainer.checkpointer.save("model_0000009", iteration=9)
    assert e.value.errno == errno.ENOSPC
    assert re.fullmatch(
        rf"No space left on device: {re.escape(str(tmp_path / 'model_0000009.pth'))} could not be written "
        r"\([\d.]+ MiB free there\); nothing was written\. Saving checkpoint model_0000009 failed; last_checkpoint "
        rf"still names {re.escape(str(tmp_path / 'model_0000004.pth'))}: free space, then continue from it "
        "with --resume",
        e.value.strerror,
    )
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"
    assert (tmp_path / "model_0000004.pth").read_bytes() == before
    assert [n for n in os.listdir(tmp_path) if n.startswith(("model_", "."))] == ["model_0000004.pth"]
    # The tools end with that message, without a traceback.
    with pytest.raises(SystemExit, match=r"^OSError: \[Errno 28\] No space left on device: .*model_0000009\.pth"):
        with errors_as_messages():
            trainer.checkpointer.save("model_0000009", iteration=9)


def truncate(path, fraction=0.5):
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * fraction)])


def test_resume_skips_a_truncated_checkpoint(vid_toy_datasets_env, tmp_path, caplog):
    trainer = VideoTrainer(toy_cfg("single_frame", tmp_path))
    for iteration, name in ((4, "model_0000004"), (7, "model_0000007"), (9, "model_final")):
        trainer.iter = iteration
        trainer.checkpointer.save(name, iteration=iteration)
    truncate(tmp_path / "model_final.pth")
    truncate(tmp_path / "model_0000007.pth", 0.9)
    resumed = VideoTrainer(toy_cfg("single_frame", tmp_path))
    with caplog.at_level(logging.WARNING):
        resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 5  # model_0000007.pth, cut short too, is passed over
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "model_final.pth is truncated or damaged" in warning
    assert warning.endswith(f"resuming from {tmp_path / 'model_0000004.pth'}, the newest whole checkpoint before it")


def test_resume_without_a_whole_checkpoint_says_what_to_do(vid_toy_datasets_env, tmp_path):
    trainer = VideoTrainer(toy_cfg("single_frame", tmp_path))
    trainer.checkpointer.save("model_final")
    truncate(tmp_path / "model_final.pth")
    resumed = VideoTrainer(toy_cfg("single_frame", tmp_path))
    with pytest.raises(CheckpointError, match=r"model_final\.pth is truncated or damaged .*no whole checkpoint"):
        resumed.resume_or_load(resume=True)


def test_resuming_trims_metrics_to_the_checkpoint(vid_toy_datasets_env, tmp_path, caplog):
    """Ctrl-C after the checkpoint of iteration 4, then --resume: metrics.json held iterations
    4, 5, ..., 9 then 5 again; now it keeps 0..4, and the records of 5..9 move aside."""
    cfg = toy_cfg("single_frame", tmp_path, "SOLVER.MAX_ITER", 6)
    trainer = VideoTrainer(cfg)
    trainer.iter = 4
    trainer.checkpointer.save("model_0000004", iteration=4)
    records = [json.dumps({"iteration": i, "total_loss": 1.0}) + "\n" for i in range(10)]
    (tmp_path / "metrics.json").write_text("".join(records) + '{"iteration": 10, "total_lo')  # killed mid-line
    resumed = VideoTrainer(cfg)
    resumed.resume_or_load(resume=True)
    with caplog.at_level(logging.WARNING):
        resumed.train()
    lines = (tmp_path / "metrics.json").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [0, 1, 2, 3, 4, 5]
    assert lines[:5] == [r.strip() for r in records[:5]]
    moved = (tmp_path / "metrics.trimmed.json").read_text().splitlines()
    assert moved == [r.strip() for r in records[5:]] + ['{"iteration": 10, "total_lo']
    assert (
        "metrics.json: training starts at iteration 5: moved the 5 records of iterations 5-9 (they run again) "
        f"and 1 damaged lines to {tmp_path / 'metrics.trimmed.json'}"
    ) in caplog.text


def test_trim_metrics_of_a_run_started_afresh(tmp_path):
    (tmp_path / "metrics.json").write_text('{"iteration": 0}\n{"iteration": 19}\n')
    trim_metrics(str(tmp_path), 20)  # nothing to trim
    assert (tmp_path / "metrics.json").read_text() == '{"iteration": 0}\n{"iteration": 19}\n'
    assert not (tmp_path / "metrics.trimmed.json").exists()
    trim_metrics(str(tmp_path), 0)  # a run without --resume into an unfinished run's folder
    assert (tmp_path / "metrics.json").read_text() == ""
    assert (tmp_path / "metrics.trimmed.json").read_text() == '{"iteration": 0}\n{"iteration": 19}\n'


def test_checkpoint_problem(tmp_path):
    good = str(tmp_path / "good.pth")
    torch.save({"model": {"w": torch.ones(1000)}}, good)
    assert checkpoint_problem(good) is None
    for fraction in (0.99, 0.5, 0.01):
        bad = str(tmp_path / f"cut_{fraction}.pth")
        open(bad, "wb").write(open(good, "rb").read()[: int(os.path.getsize(good) * fraction)])
        assert checkpoint_problem(bad).startswith("is truncated or damaged")
    open(tmp_path / "empty.pth", "wb").close()
    assert checkpoint_problem(str(tmp_path / "empty.pth")) == "is empty"
    (tmp_path / "text.pth").write_text("not a checkpoint")
    assert checkpoint_problem(str(tmp_path / "text.pth")) == "is not a checkpoint in torch.save's zip format"
    assert checkpoint_problem(str(tmp_path / "absent.pth")) == "does not exist"


# ---- weights that do not fit the model ----


def eval_args(tmp_path, weights, *flags, config="toy/troi.yaml"):
    return train_net.argument_parser().parse_args(
        [
            "--config-file",
            get_config_file(config),
            "--eval-only",
            *flags,
            "OUTPUT_DIR",
            str(tmp_path / "out"),
            "MODEL.WEIGHTS",
            weights,
            *map(str, TINY),
            "DATASETS.TEST",
            "('toy_vid_val',)",  # the weights are refused before the evaluation
        ]
    )


def test_eval_only_refuses_missing_or_unfit_weights(vid_toy_datasets_env, tmp_path):
    with pytest.raises(
        CheckpointError,
        match=r"(?s)evaluated as initialized:\n  - no weights were loaded \(MODEL\.WEIGHTS is empty\)"
        r".*--allow-partial-weights",
    ):
        train_net.main(eval_args(tmp_path, ""))
    with pytest.raises(CheckpointError, match=r"absent\.pth: checkpoint file does not exist"):
        train_net.main(eval_args(tmp_path, str(tmp_path / "absent.pth")))
    # Single-frame weights into the TRoI model: TRoI's embedding conv would stay random.
    single = save_weights("single_frame", tmp_path / "single.pth")
    missing = (
        r"do not fit the VideoRCNN for evaluation:\n"
        r"  - 2 parameters are missing: roi_heads\.box_pooler\.aggregation\.embed \(2\)"
    )
    with pytest.raises(CheckpointError, match=missing):
        train_net.main(eval_args(tmp_path, single))
    # Weights of a model for 5 classes; the toy model has 3.
    five = save_weights(
        "troi",
        tmp_path / "five.pth",
        lambda k: True,
        "MODEL.ROI_HEADS.NUM_CLASSES",
        5,
        "DATASETS.TRAIN",
        (),
        "DATASETS.TEST",
        (),
    )
    classes = (
        r"cls_score\.weight has shape \(6, 256\) there, \(4, 256\) in the model: "
        r"5 classes in the checkpoint, 3 in the model"
    )
    with pytest.raises(CheckpointError, match=classes):
        train_net.main(eval_args(tmp_path, five))


def test_eval_only_without_a_test_set_is_refused(vid_toy_datasets_env, tmp_path):
    args = eval_args(tmp_path, "weights.pth")
    args.opts += ["DATASETS.TEST", "()"]
    with pytest.raises(SystemExit, match=r"--eval-only: DATASETS\.TEST of .*troi\.yaml is empty, there is nothing"):
        train_net.main(args)
    lazy = load_tool("lazyconfig_train_net")
    config = tmp_path / "no_evaluator.py"
    config.write_text(
        "from detectron2.config import LazyConfig\n"
        f"globals().update(LazyConfig.load({os.path.join(REPO, 'configs', 'ablations', 'troi_toy.py')!r}))\n"
        "del dataloader.evaluator\n"
    )
    args = lazy.argument_parser().parse_args(["--config-file", str(config), "--eval-only"])
    with pytest.raises(SystemExit, match=r"--eval-only: .*no_evaluator\.py defines no dataloader\.test and "):
        lazy.main(args)


def test_allow_partial_weights_warns_instead(tmp_path, caplog):
    cfg = setup_cfg(get_config_file("toy/troi.yaml"))
    checkpointer = VideoCheckpointer(build_model(cfg))
    checkpointer.resume_or_load(save_weights("single_frame", tmp_path / "single.pth"), resume=False)
    with caplog.at_level(logging.WARNING):
        problems = checkpointer.check_weights(evaluating=True, allow_partial=True)
    assert problems == ["2 parameters are missing: roi_heads.box_pooler.aggregation.embed (2)"]
    assert "--allow-partial-weights: running anyway" in caplog.text
    assert train_net.argument_parser().parse_args(["--allow-partial-weights"]).allow_partial_weights


def test_training_weights_backbone_only_or_complete_detector(vid_toy_datasets_env, tmp_path):
    # ImageNet-style weights (backbone only): the heads start from their initialization.
    backbone = save_weights("troi", tmp_path / "backbone.pth", lambda k: k.startswith("backbone.bottom_up"))
    trainer = VideoTrainer(toy_cfg("troi", tmp_path / "a", "MODEL.WEIGHTS", backbone))
    trainer.resume_or_load(resume=False)
    # A trained single-frame detector lacks TRoI's parameters: refused unless asked for.
    single = save_weights("single_frame", tmp_path / "single.pth")
    trainer = VideoTrainer(toy_cfg("troi", tmp_path / "b", "MODEL.WEIGHTS", single))
    with pytest.raises(
        CheckpointError,
        match=r"for training:\n  - 2 parameters outside the backbone are missing: "
        r"roi_heads\.box_pooler\.aggregation\.embed",
    ):
        trainer.resume_or_load(resume=False)
    trainer.resume_or_load(resume=False, allow_partial_weights=True)


# ---- a data error during training ----


def test_a_data_error_saves_the_iterations_done(vid_toy_datasets_env, tmp_path, monkeypatch):
    real = trainer_module.build_video_train_loader

    def failing_after_two_batches(cfg, **kwargs):
        def batches():
            for i, batch in enumerate(real(cfg, **kwargs)):
                if i == 2:
                    raise OSError("toy_vid/Data/VID/train/x/000003.JPEG: cannot read image (truncated)")
                yield batch

        return batches()

    monkeypatch.setattr(trainer_module, "build_video_train_loader", failing_after_two_batches)
    cfg = toy_cfg("single_frame", tmp_path, "SOLVER.MAX_ITER", 5, "SOLVER.CHECKPOINT_PERIOD", 100)
    trainer = VideoTrainer(cfg)
    trainer.resume_or_load(resume=False)
    with pytest.raises(OSError, match="cannot read image"):
        trainer.train()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"  # iterations 0 and 1 ran
    monkeypatch.setattr(trainer_module, "build_video_train_loader", real)
    resumed = VideoTrainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 2
    torch.testing.assert_close(resumed.model.state_dict(), trainer.model.state_dict())


# ---- tools/run_ablation.py, tools/lazyconfig_train_net.py, converter outputs ----


def record(run_ablation, folder, ablation, overrides, toy=False):
    """The record run_ablation.py writes into a point's folder as it runs it."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, run_ablation.RECORD), "w") as f:
        json.dump(run_ablation.point_record(ablation, toy, overrides), f)


def test_run_ablation_does_not_take_a_truncated_model_as_trained(tmp_path, capsys):
    run_ablation = load_tool("run_ablation")
    ablation = os.path.join(REPO, "configs", "ablations", "stride_S.py")
    grid = dict(run_ablation.load_grid(ablation)[0])
    saved = str(tmp_path / "S=1" / "model_final.pth")
    record(run_ablation, tmp_path / "S=1", ablation, grid["S=1"])
    torch.save({"model": {"w": torch.ones(100)}}, saved)
    os.makedirs(tmp_path / "S=3" / "inference")
    record(run_ablation, tmp_path / "S=3", ablation, grid["S=3"])
    (tmp_path / "S=3" / "inference" / "vid_results.json").write_text('{"bbox": {"AP')  # cut short
    args = [ablation, "--only", "S=1", "--only", "S=3", "--output-dir", str(tmp_path), "--dry-run"]
    run_ablation.main(args)
    printed = capsys.readouterr().out
    assert printed.count("--eval-only") == 2  # S=1's model is trained; S=3's results are unreadable
    assert "S=3/inference/vid_results.json: unreadable results" in printed
    truncate(saved)
    run_ablation.main(args)
    printed = capsys.readouterr().out
    assert f"{saved} is truncated or damaged" in printed
    assert printed.count("--eval-only") == 1 and "--resume" in printed  # S=1 trains (again), S=3 evaluates it


def test_run_ablation_keys_results_by_their_overrides(tmp_path, capsys):
    run_ablation = load_tool("run_ablation")
    ablation = os.path.join(REPO, "configs", "ablations", "stride_S.py")
    grid = dict(run_ablation.load_grid(ablation)[0])
    os.makedirs(tmp_path / "S=1" / "inference")
    (tmp_path / "S=1" / "inference" / "vid_results.json").write_text('{"bbox": {"AP50": 61.5}}')
    torch.save({"model": {"w": torch.ones(10)}}, str(tmp_path / "S=1" / "model_final.pth"))
    record(run_ablation, tmp_path / "S=1", ablation, [*grid["S=1"], "train.max_iter=1000"])
    args = [ablation, "--only", "S=1", "--only", "S=3", "--output-dir", str(tmp_path), "--dry-run"]
    # The same overrides: S=1's results are reused, S=3 evaluates S=1's model.
    run_ablation.main([*args, "train.max_iter=1000"])
    printed = capsys.readouterr().out
    assert "S=1: results already in" in printed and printed.count("--eval-only") == 1
    # Other overrides: S=1's stale results would be reported, its model evaluated for S=3.
    with pytest.raises(SystemExit) as e:
        run_ablation.main([*args, "train.max_iter=2000"])
    message = str(e.value)
    assert message.startswith("results of other runs would be taken for this one's, or overwritten:\n  - ")
    assert (
        f"{tmp_path / 'S=1'} holds a run of other settings (ablation_point.json): "
        "overrides ['train.max_iter=1000'] there, ['train.max_iter=2000'] now"
    ) in message
    assert message.endswith("Pass another --output-dir, or delete a folder to run its point again.")
    with pytest.raises(
        SystemExit, match=r"S=1 holds a run of other settings \(ablation_point\.json\): toy False there, True now\n"
    ):
        run_ablation.main([*args, "--toy", "train.max_iter=1000"])
    # A second run_ablation.py into the same folder while one runs.
    holder = hold_lock(tmp_path)
    try:
        with pytest.raises(
            SystemExit, match=rf"--output-dir {tmp_path} is in use by another run_ablation\.py \(pid 4242"
        ):
            run_ablation.main(args[:-1] + ["train.max_iter=1000"])  # not a dry run
    finally:
        holder.kill()
        holder.wait()
    # A folder of an older run_ablation.py, without a record: its overrides are unknown.
    os.remove(tmp_path / "S=1" / run_ablation.RECORD)
    with pytest.raises(
        SystemExit, match=r"S=1 holds model_final\.pth, inference/vid_results\.json of unknown overrides"
    ):
        run_ablation.main(args)


def test_lazyconfig_train_net_guards(vid_toy_datasets_env, tmp_path, monkeypatch):
    lazy = load_tool("lazyconfig_train_net")
    config = os.path.join(REPO, "configs", "ablations", "troi_toy.py")

    def args(*extra):
        return lazy.argument_parser().parse_args(["--config-file", config, *extra, f"train.output_dir={tmp_path}"])

    with pytest.raises(
        ConfigError, match=r"troi_toy\.py: invalid config:\n  - train\.checkpointer\.period 0: must be >= 1"
    ):
        lazy.main(args("train.checkpointer.period=0"))
    with pytest.raises(ConfigError) as e:
        lazy.main(
            args("train.max_iter=four", "train.max_iters=5", "model.roi_heads.box_predictor.test_score_thresh=1.5")
        )
    assert str(e.value).endswith(
        "troi_toy.py: invalid overrides:\n"
        "  - train.max_iter=four: train.max_iter must be an integer, as its value 300 in the config, not 'four'\n"
        "  - train.max_iters=5: the config has no key train.max_iters"
    )
    with pytest.raises(ConfigError, match=r"test_score_thresh 1\.5: must be in \[0, 1\]"):
        lazy.main(args("model.roi_heads.box_predictor.test_score_thresh=1.5"))
    # From the command line: the message, exit code 1, no traceback.
    command = [sys.executable, "tools/lazyconfig_train_net.py", "--config-file", config, "train.max_iter=four"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-2:] == [
        f"ConfigError: {config}: invalid overrides:",
        "  - train.max_iter=four: train.max_iter must be an integer, as its value 300 in the config, not 'four'",
    ]
    (tmp_path / "model_final.pth").write_bytes(b"trained")
    with pytest.raises(SystemExit, match=rf"train\.output_dir {tmp_path} holds a finished run"):
        lazy.main(args())
    with pytest.raises(CheckpointError, match="would be evaluated as initialized"):
        lazy.main(args("--eval-only"))


def test_converter_output_is_written_atomically(tmp_path, monkeypatch):
    from temporal_roi_align.checkpoint import save_checkpoint

    path = str(tmp_path / "model.pth")
    save_checkpoint(path, {"w": torch.ones(10)}, "test")
    before = open(path, "rb").read()

    def interrupted(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"w": torch.zeros(10)}, "test")
    assert open(path, "rb").read() == before and os.listdir(tmp_path) == ["model.pth"]
