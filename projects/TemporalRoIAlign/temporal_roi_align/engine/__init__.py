"""Training, evaluation and launching, laid out as Detectron2's ``engine/``: ``trainer.py``
(:class:`VideoTrainer`), ``launch.py`` (CPU/gloo :func:`launch`), ``defaults.py``
(:func:`setup_cfg`, the command line, the output folder), ``optimizer.py``."""

from .defaults import (
    HelpFormatter,
    add_import_argument,
    argument_parser,
    check_output_dir,
    errors_as_messages,
    import_modules,
    lock_output_dir,
    setup_cfg,
    setup_run,
)
from .launch import launch
from .optimizer import sgd_with_gradient_clipping
from .trainer import (
    TRAIN_MAPPERS,
    FailureRecordingLoader,
    PeriodicWriter,
    VideoTrainer,
    save_iterations_done,
    trim_metrics,
)

__all__ = [
    "FailureRecordingLoader",
    "HelpFormatter",
    "PeriodicWriter",
    "TRAIN_MAPPERS",
    "VideoTrainer",
    "add_import_argument",
    "argument_parser",
    "check_output_dir",
    "errors_as_messages",
    "import_modules",
    "launch",
    "lock_output_dir",
    "save_iterations_done",
    "setup_cfg",
    "setup_run",
    "sgd_with_gradient_clipping",
    "trim_metrics",
]
