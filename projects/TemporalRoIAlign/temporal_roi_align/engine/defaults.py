"""Setting up a run, as Detectron2's ``engine/defaults.py``: the checked config, the command line
and the output folder."""

import argparse
import contextlib
import fcntl
import importlib
import logging
import os
import shlex
import socket
import sys
import time
import traceback

import detectron2.utils.comm as comm
import torch
import torch.multiprocessing as mp
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils.logger import setup_logger

from ..checkpoint import CheckpointError
from ..config import add_video_config, rename_former_choices
from ..config_checks import ConfigError, check_config
from ..data.datasets import DatasetError
from ..utils import NO_SPACE, remove_leftover_temporaries

__all__ = [
    "HelpFormatter",
    "add_import_argument",
    "argument_parser",
    "check_output_dir",
    "errors_as_messages",
    "fall_back_to_cpu",
    "import_modules",
    "lock_output_dir",
    "setup_cfg",
    "setup_run",
]

logger = logging.getLogger(__name__)

# The file of an output folder that the run using it holds locked (flock), with who holds it.
LOCK_FILE = ".lock"
# The lock file of each output folder this process holds, kept open (locked) until it ends.
_held_locks = {}


def setup_cfg(config_file: str, opts=(), *, args=None):
    """
    Config from a yaml file plus ``KEY VALUE`` overrides, former names of values replaced by the
    current ones (:func:`rename_former_choices`), checked by :func:`check_config`. On a
    machine without CUDA the model runs on the CPU whatever MODEL.DEVICE says. With ``args``
    (argparse namespace of ``default_argument_parser``): the datasets must be registered,
    ``--eval-only`` needs a test set, the output folder passes :func:`check_output_dir`, then
    :func:`setup_run` runs.
    """
    if not os.path.isfile(config_file):
        raise SystemExit(f"{config_file}: config file not found")
    cfg = get_cfg()
    add_video_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    rename_former_choices(cfg)
    fall_back_to_cpu(cfg)
    cfg.freeze()
    try:
        check_config(cfg)
    except ConfigError as e:
        raise ConfigError(f"{config_file}: {e}") from None
    if args is not None:
        unknown = [n for n in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST) if n not in DatasetCatalog.list()]
        if unknown:
            raise SystemExit(f"DATASETS.TRAIN/TEST: {unknown} are not registered datasets (see datasets/README.md)")
        if args.eval_only and not cfg.DATASETS.TEST:
            raise SystemExit(f"--eval-only: DATASETS.TEST of {config_file} is empty, there is nothing to evaluate")
        check_output_dir(
            cfg.OUTPUT_DIR, resume=args.resume, eval_only=args.eval_only, overwrite=getattr(args, "overwrite", False)
        )
        setup_run(cfg, args, cfg.OUTPUT_DIR)
        if cfg.MODEL.DEVICE == "cpu":
            logger.info("CUDA is not available: running on the CPU")
    return cfg


def fall_back_to_cpu(cfg) -> bool:
    """Set MODEL.DEVICE of the (unfrozen) ``cfg`` to "cpu" when it names CUDA on a machine
    without CUDA; True if it did."""
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
        return True
    return False


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The ``--help`` of every tool: the description and epilog (usage examples) as written, line
    breaks kept, and each option's default after its help, unless the default says nothing
    (None, False, "" or an empty list)."""

    def _get_help_string(self, action):
        default = action.default
        if default is None or default is False or default is argparse.SUPPRESS or default in ("", []):
            return action.help
        return super()._get_help_string(action)


def add_import_argument(parser):
    """``--import MODULE`` (repeatable, ``args.modules``): modules that register the user's
    datasets (or models), imported by :func:`import_modules` before anything looks them up."""
    parser.add_argument(
        "--import",
        dest="modules",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this module first, e.g. one that registers your datasets (docs/custom_data.md); "
        "found on PYTHONPATH or in the current folder; repeatable",
    )


def import_modules(modules) -> None:
    """Import each of ``modules`` (``--import``), the current folder searched last as ``python -m``
    searches it. A module that is not found, or whose import fails (where is said), ends the
    program with a message naming it. Importing again does nothing: every process of
    ``--num-gpus N`` runs this in its ``main``."""
    if modules and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as e:
            if isinstance(e, ModuleNotFoundError) and e.name and f"{module}.".startswith(f"{e.name}."):
                raise SystemExit(
                    f"--import {module}: no module {e.name!r} on PYTHONPATH or in the current folder {os.getcwd()} "
                    "(give a module name: my_datasets for my_datasets.py)"
                ) from None
            frames = [f for f in traceback.extract_tb(e.__traceback__) if not f.filename.startswith("<frozen")]
            where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
            raise SystemExit(f"--import {module}: importing it failed{where}: {type(e).__name__}: {e}") from None


def argument_parser(epilog=None):
    """Detectron2's ``default_argument_parser`` (``epilog``: the tool's usage examples) with
    :class:`HelpFormatter`, ``--import`` (:func:`add_import_argument`) and the switches of this
    project's safeguards (tools/train_net.py, tools/lazyconfig_train_net.py)."""
    parser = default_argument_parser(epilog)
    parser.formatter_class = HelpFormatter
    add_import_argument(parser)
    parser.add_argument(
        "--allow-partial-weights",
        action="store_true",
        help="load weights that do not fit the model (missing parameters, another class count) and run "
        "anyway with the rest of the model as initialized, e.g. to fine-tune on other classes",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="train into an output folder that holds a finished run, removing its model_final.pth, "
        "last_checkpoint and metrics.json first",
    )
    return parser


def check_output_dir(output_dir: str, *, resume: bool, eval_only: bool, overwrite: bool, key="OUTPUT_DIR"):
    """Claim and check the output folder of a run, in every process of the run (``key`` names
    the folder's config key):

    * the main process locks it (:func:`lock_output_dir`) for as long as it lives: a second run
      into the folder is refused, in all its processes, naming the run that holds it;
    * training into a folder that holds a finished run (``model_final.pth``) without ``resume``
      is refused: Detectron2 would overwrite its model and append to its metrics.json. With
      ``overwrite``, the files a new run would overwrite or append to (``model_final.pth``,
      ``last_checkpoint``, ``metrics.json``) are removed first. Evaluation (which adds to
      log.txt, config.yaml and ``inference/``) is always allowed.
    """
    holder = lock_output_dir(output_dir, key) if comm.is_main_process() else None
    if comm.get_world_size() > 1:
        holder = comm.all_gather(holder)[0]  # every process stops, none waits for the main one
    if holder is not None:  # said once, by the main process
        raise SystemExit(
            f"{key} {output_dir} is in use by another run ({holder}): two runs into one folder overwrite "
            f"each other's checkpoints and mix their metrics.json. Wait for it to end, or use another {key}."
            if comm.is_main_process()
            else 1
        )
    final = os.path.join(output_dir, "model_final.pth")
    if eval_only or resume or not os.path.exists(final):
        return
    if not overwrite:
        raise SystemExit(
            f"{key} {output_dir} holds a finished run (model_final.pth); training into it would "
            "overwrite the model and append to its metrics.json. Continue or re-evaluate it with "
            f"--resume, train into a new {key}, or pass --overwrite to replace it."
        )
    for name in ("model_final.pth", "last_checkpoint", "metrics.json"):
        path = os.path.join(output_dir, name)
        if comm.is_main_process() and os.path.exists(path):
            os.remove(path)
            logger.warning(f"--overwrite: removed {path}")


def lock_output_dir(output_dir: str, key="OUTPUT_DIR"):
    """Lock ``output_dir`` (created if needed) for this process until it ends, with an exclusive
    ``flock`` of its ``.lock`` file, which the operating system releases when the process dies,
    however it dies. Returns None, or who holds the lock (pid, host, start, command) when another
    process does. Locking again a folder this process holds does nothing.

    On a file system without locks (flock fails otherwise than "held"), a warning says that a
    second run would not be detected."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_FILE)
    if os.path.realpath(path) in _held_locks:
        return None
    lock = open(path, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or f"{path} is locked"
        lock.close()
        return holder
    except OSError as e:
        lock.close()
        logger.warning(
            f"{path}: cannot lock {key} {output_dir} ({e.strerror}): a second run into it at the same time "
            "would not be detected, and temporary files of killed saves are not removed"
        )
        return None
    lock.truncate(0)
    lock.write(
        f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: "
        f"{shlex.join(sys.argv)}\n"
    )
    lock.flush()
    _held_locks[os.path.realpath(path)] = lock
    return None


def setup_run(cfg, args, output_dir: str) -> None:
    """After :func:`check_output_dir`: Detectron2's ``default_setup`` (logging to
    ``output_dir``/log.txt, config.yaml, seed), this package's logging to the same log, then, in
    the main process holding the folder's lock, the removal of the temporary files that saves
    killed mid-write left in ``output_dir`` and its ``inference/`` folders (as large as a
    checkpoint each), counted in the log."""
    default_setup(cfg, args)
    setup_logger(output_dir, distributed_rank=comm.get_rank(), name="temporal_roi_align")
    if os.path.realpath(os.path.join(output_dir, LOCK_FILE)) not in _held_locks:
        return
    folders = [output_dir, *(folder for folder, _, _ in os.walk(os.path.join(output_dir, "inference")))]
    removed = {path: size for folder in folders for path, size in remove_leftover_temporaries(folder).items()}
    if removed:
        logger.warning(
            f"Removed {len(removed)} temporary files ({sum(removed.values()) / 2**20:.1f} MiB) of saves killed "
            f"mid-write from {output_dir}: {', '.join(os.path.relpath(p, output_dir) for p in removed)}"
        )


@contextlib.contextmanager
def errors_as_messages():
    """End the program with the message of an error that says what went wrong and what to do (exit
    code 1, no traceback): a :class:`CheckpointError`, a :class:`ConfigError`, a
    :class:`~..data.datasets.DatasetError` (a dataset file that cannot be read), a disk without room
    (:data:`~..utils.NO_SPACE`). A process of ``--num-gpus N`` that exited (its message is above)
    ends the program with its exit code. Other errors go on."""
    try:
        yield
    except mp.ProcessExitedException as e:
        raise SystemExit(str(e) if e.signal_name else e.exit_code) from None
    except (CheckpointError, ConfigError, DatasetError) as e:
        raise SystemExit(f"{type(e).__name__}: {e}") from None
    except OSError as e:
        if e.errno not in NO_SPACE:
            raise
        raise SystemExit(f"{type(e).__name__}: {e}") from None
