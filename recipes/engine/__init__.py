"""The task-agnostic engine: trainer, checkpoints, configuration, random streams and the
seed-paired comparison of its arms. It knows nothing about images, labels or noise: a
task supplies those (``ndwconv.recipes.engine.task``)."""

from .arms import ARMS, DEFAULT_ARMS, Arm, compare_settings
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    check_sidecar,
    find_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from .compare import check_fit, compare, format_table, report_markdown, verdict
from .config import builtin_configs, check_section, load_config, validate
from .distributed import resolve_device
from .lock import FolderInUseError, RunLock, check_output_folder
from .task import LOSSES, METHODS, Metric, Task, loss_by_name
from .trainer import FreezeDensities, Hook, Run, TrainResult, fit

__all__ = [
    "ARMS",
    "CHECKPOINT_FORMAT",
    "DEFAULT_ARMS",
    "LOSSES",
    "METHODS",
    "Arm",
    "CheckpointError",
    "FolderInUseError",
    "FreezeDensities",
    "Hook",
    "Metric",
    "Run",
    "RunLock",
    "Task",
    "TrainResult",
    "builtin_configs",
    "check_fit",
    "check_output_folder",
    "check_section",
    "check_sidecar",
    "compare",
    "compare_settings",
    "find_checkpoint",
    "fit",
    "format_table",
    "latest_checkpoint",
    "load_checkpoint",
    "load_config",
    "loss_by_name",
    "report_markdown",
    "resolve_device",
    "save_checkpoint",
    "validate",
    "verdict",
]
