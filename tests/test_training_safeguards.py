"""Nothing lost, nothing silently wrong in training and evaluation runs: atomic checkpoints,
resuming from the newest whole one, weights that must fit the model, a finished run's folder
that is not overwritten, and the iterations done saved when the training data fails."""

import importlib.util
import logging
import os

import pytest
import torch
from detectron2.modeling import build_model

from temporal_roi_align.checkpoint import CheckpointError, VideoCheckpointer, checkpoint_problem
from temporal_roi_align.engine import VideoTrainer, check_output_dir, setup_cfg
from temporal_roi_align.engine import trainer as trainer_module
from temporal_roi_align.model_zoo import get_config_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "SOLVER.IMS_PER_BATCH",
    2,
    "INPUT.MIN_SIZE_TRAIN",
    (64,),
    "INPUT.MIN_SIZE_TEST",
    64,
    "INPUT.SUPPORT.NUM_TEST",
    2,
    "SOLVER.WARMUP_ITERS",
    0,
    "DATASETS.TEST",
    (),
]


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_net = load_tool("train_net")


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
            "DATASETS.TEST",
            "()",
        ]
    )
    with pytest.raises(
        SystemExit, match=rf"OUTPUT_DIR {tmp_path} holds a finished run.*--resume.*new OUTPUT_DIR.*--overwrite"
    ):
        train_net.main(args)
    assert (tmp_path / "model_final.pth").read_bytes() == b"trained for days"
    assert sorted(os.listdir(tmp_path)) == ["metrics.json", "model_final.pth"]  # not even a config.yaml


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


def test_run_ablation_does_not_take_a_truncated_model_as_trained(tmp_path, capsys):
    run_ablation = load_tool("run_ablation")
    ablation = os.path.join(REPO, "configs", "ablations", "stride_S.py")
    saved = str(tmp_path / "S=1" / "model_final.pth")
    os.makedirs(os.path.dirname(saved))
    torch.save({"model": {"w": torch.ones(100)}}, saved)
    os.makedirs(tmp_path / "S=3" / "inference")
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


def test_lazyconfig_train_net_guards(vid_toy_datasets_env, tmp_path, monkeypatch):
    lazy = load_tool("lazyconfig_train_net")
    config = os.path.join(REPO, "configs", "ablations", "troi_toy.py")

    def args(*extra):
        return lazy.argument_parser().parse_args(["--config-file", config, *extra, f"train.output_dir={tmp_path}"])

    with pytest.raises(SystemExit, match=r"train\.checkpointer\.period 0: must be >= 1"):
        lazy.main(args("train.checkpointer.period=0"))
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
