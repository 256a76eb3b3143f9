"""The Hydra front ends, shipped inside the package: ``painface train|eval|predict`` and the
repository's ``train.py``, ``eval.py`` and ``predict.py`` (thin wrappers) all run these.

The configs live in ``painface/conf`` (the repository's ``conf/`` is a link to it), so an
installed wheel trains without a clone; ``--config-dir DIR`` adds a lab's own configs.
"""

from __future__ import annotations

import sys
from pathlib import Path

CONF = Path(__file__).resolve().parent / "conf"
TASKS = {
    "train": "painface.training:train",
    "eval": "painface.training:evaluate",
    "predict": "painface.predict:predict_from_config",
}


def compose_config(config_name: str, overrides: list[str], config_dir: str | Path | None = None):
    """The composed config, as the command line would build it (for tests and pipelines)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir or CONF), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def hydra_main(config_name: str, argv: list[str] | None = None):
    """Run one task under Hydra with the packaged configs; Hydra parses ``argv`` (overrides,
    ``-m``, ``--config-dir``, ``--help``). Returns the task's result (the optimised metric
    for sweepers)."""
    import importlib

    import hydra
    from omegaconf import DictConfig

    from painface.config import one_line_hydra_errors
    from painface.errors import run_hydra_task

    module, _, name = TASKS[config_name].partition(":")
    one_line_hydra_errors()
    # Hydra names the run's log after the job; keep train.log / eval.log / predict.log
    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a.startswith("hydra.job.name=") for a in args):
        args = [*args, f"hydra.job.name={config_name}"]  # last: options such as --config-dir come first

    @hydra.main(version_base="1.3", config_path=str(CONF), config_name=config_name)
    def main(cfg: DictConfig):
        task = getattr(importlib.import_module(module), name)
        result = run_hydra_task(task, cfg)
        if config_name == "train" and isinstance(result, dict):
            return result.get(cfg.get("optimized_metric") or "", None)
        return None

    saved = sys.argv
    sys.argv = [f"painface {config_name}", *args]
    try:
        return main()
    finally:
        sys.argv = saved
