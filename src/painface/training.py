"""What ``train.py`` and ``eval.py`` run: build data, model, callbacks and loggers from the
validated config, then fit, test or evaluate."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from painface.files import atomic_write, write_json


def _instantiate_dict(node) -> list:
    from hydra.utils import instantiate

    return [instantiate(v) for v in (node or {}).values() if v is not None and "_target_" in v]


def _instantiate(node, **kwargs):
    """``hydra.utils.instantiate`` that lets painface's own one-line errors through unwrapped."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from painface.errors import PainfaceError

    try:
        return instantiate(node, _recursive_=False, _convert_="all", **kwargs)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, PainfaceError):
            raise exc.__cause__ from None
        raise


def build(cfg: DictConfig):
    """Datamodule, model, trainer from a validated config."""
    import lightning as L
    import torch
    from hydra.utils import instantiate

    from painface.callbacks import RunSettingsLogger

    if cfg.get("matmul_precision"):
        torch.set_float32_matmul_precision(cfg.matmul_precision)
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True)
    # model._target_ and data._target_ choose the classes (lightning-hydra-template style);
    # nested dicts (net, optimizer, build) reach the constructors as plain dicts
    group_by = list(OmegaConf.select(cfg, "model.metrics.group_by", default=None) or [])
    dm = _instantiate(cfg.data, input_size=OmegaConf.select(cfg, "model.net.input_size", default=96), group_by=group_by)
    model = _instantiate(cfg.model)
    callbacks = _instantiate_dict(cfg.callbacks)
    loggers = _instantiate_dict(cfg.logger)
    # Lightning logs the model's and datamodule's hparams; add what else decides the result
    run = {
        "seed": cfg.seed,
        "task_name": cfg.task_name,
        "tags": list(cfg.get("tags") or []),
        "trainer": {
            k: cfg.trainer.get(k)
            for k in ("max_epochs", "precision", "accelerator", "devices", "strategy")
            if k in cfg.trainer
        },
    }
    callbacks.append(RunSettingsLogger(run))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return dm, model, trainer


def train(cfg: DictConfig) -> dict:
    """Fit (optionally resuming from ``ckpt_path``), then test the best checkpoint on held-out mice."""
    from painface.calibration import calibration_report
    from painface.config import ConfigError, validate
    from painface.nets import checkpoint_hparams

    # a bad checkpoint fails first, before validate() imports Lightning
    saved = checkpoint_hparams(cfg.ckpt_path)["net"] if cfg.get("ckpt_path") else None
    cfg = validate(cfg)
    if saved:  # resuming: the checkpoint's network must be the configured one
        for key in ("name", "input_size"):
            if saved.get(key) != cfg.model.net[key]:
                raise ConfigError(
                    f"config key 'model.net.{key}': {cfg.model.net[key]!r}, but ckpt_path {cfg.ckpt_path} "
                    f"was trained with {saved.get(key)!r}; resume with the same model"
                )
    dm, model, trainer = build(cfg)
    if cfg.train:
        trainer.fit(model, datamodule=dm, ckpt_path=cfg.ckpt_path)
    metrics: dict = {k: float(v) for k, v in trainer.callback_metrics.items()}
    best = getattr(trainer.checkpoint_callback, "best_model_path", "") if trainer.checkpoint_callback else ""
    if cfg.test:
        test_ckpt = best or cfg.ckpt_path
        results = trainer.test(model, datamodule=dm, ckpt_path=test_ckpt if test_ckpt else None)
        metrics.update({k: float(v) for k, v in (results[0] if results else {}).items()})
        if not trainer.fast_dev_run:
            calib = calibration_report(trainer, model, dm, Path(cfg.paths.output_dir))
            metrics.update({f"calibration/{k}": v for k, v in calib.items() if isinstance(v, float)})
    if trainer.is_global_zero:
        _summarise(cfg, trainer, metrics, best, getattr(dm, "test_role", None))
    return metrics


def evaluate(cfg: DictConfig) -> dict:
    """``eval.py``: metrics and confusion matrix of a checkpoint on a (held-out) store."""
    from painface.calibration import calibration_report
    from painface.config import ConfigError, validate
    from painface.nets import precheck_model

    if not cfg.get("ckpt_path"):
        raise ConfigError("config key 'ckpt_path': eval.py needs ckpt_path=PATH")
    # a bad checkpoint fails before anything else is set up, and before Lightning is imported
    hparams = precheck_model(cfg.ckpt_path)
    cfg = validate(cfg)
    from painface.models import load_classifier

    model = load_classifier(cfg.ckpt_path, hparams=hparams)
    import logging

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)  # no device banner
    dm, _, trainer = build(cfg)
    own = model.hparams.net
    if own.get("name") != cfg.model.net.name or own.get("input_size") != cfg.model.net.input_size:
        print(
            f"note: evaluating the checkpoint's own network ({own.get('name')}, {own.get('input_size')} px), "
            f"not model={cfg.model.net.name} ({cfg.model.net.input_size} px)",
            file=sys.stderr,
        )
    dm.input_size = model.input_size
    dm.prepare_data()  # data=synthetic builds its store on first use, as in train.py
    # evaluate on every selected mouse of the store, not on one fold (so no fold count applies)
    dm.n_folds, dm.test_fold = 1, None
    dm.setup("test")
    dm.val_index = dm.test_index = dm.index
    dm.test_role = "every selected mouse of the store"
    results = trainer.test(model, datamodule=dm)
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    calib = calibration_report(trainer, model, dm, Path(cfg.paths.output_dir))
    metrics.update({f"calibration/{k}": v for k, v in calib.items() if isinstance(v, float)})
    if trainer.is_global_zero:
        _summarise(cfg, trainer, metrics, cfg.ckpt_path, getattr(dm, "test_role", None))
    return metrics


def _summarise(cfg, trainer, metrics: dict, ckpt: str, test_role: str | None = None) -> None:
    from painface.stats import StatsError, table1

    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", {"checkpoint": ckpt, "test_on": test_role, "metrics": metrics}, sort_keys=True)
    try:
        confusion = table1(metrics)
    except StatsError:
        confusion = None
    if confusion is not None:
        with atomic_write(out / "table1.csv") as tmp:
            confusion.to_csv(tmp)
    images = sorted(
        {
            str(p.parent)
            for lg in trainer.loggers
            if getattr(lg, "log_dir", None)
            for p in Path(lg.log_dir).glob("images/*.png")
        }
    )
    lines = [
        "",
        "painface results",
        f"  metrics      {out / 'metrics.json'}",
        *([f"  tested on    {test_role}"] if test_role else []),
        *[
            f"  {k:<12} {metrics[k]:.3f}"
            for k in sorted(metrics)
            if k.startswith("test/") and "=" not in k and "confmat" not in k
        ],
        *(
            [
                f"  Table 1      {out / 'table1.csv'}",
                *("    " + line for line in _format_table1(confusion).splitlines()),
            ]
            if confusion is not None
            else []
        ),
        f"  checkpoint   {ckpt or '(none)'}",
        *(
            [f"  calibration  {out / 'reliability.png'} (temperature {metrics['calibration/temperature']:.2f})"]
            if "calibration/temperature" in metrics
            else []
        ),
        *[f"  images       {d}  (confusion matrix, Grad-CAM)" for d in images],
        *[f"  logs         {lg.log_dir}" for lg in trainer.loggers if getattr(lg, "log_dir", None)],
    ]
    print("\n".join(lines))


def _format_table1(t) -> str:
    shown = t.copy()
    for c in ("sensitivity", "specificity"):
        shown[c] = (100 * shown[c]).map(lambda v: f"{v:.1f} %" if v == v else "-")
    return shown.to_string()
