"""What ``train.py`` and ``eval.py`` run: build data, model, callbacks and loggers from the
validated config, then fit, test or evaluate."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def _instantiate_dict(node) -> list:
    from hydra.utils import instantiate

    return [instantiate(v) for v in (node or {}).values() if v is not None and "_target_" in v]


def build(cfg: DictConfig):
    """Datamodule, model, trainer from a validated config."""
    import lightning as L
    import torch
    from hydra.utils import instantiate

    from painface.callbacks import RunSettingsLogger
    from painface.data import PainFaceDataModule
    from painface.models import PainClassifier

    if cfg.get("matmul_precision"):
        torch.set_float32_matmul_precision(cfg.matmul_precision)
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True)
    data_kw = OmegaConf.to_container(cfg.data, resolve=True)
    data_kw.pop("_target_")
    dm = PainFaceDataModule(**data_kw, input_size=cfg.model.net.input_size, group_by=list(cfg.model.metrics.group_by))
    net = OmegaConf.to_container(cfg.model.net, resolve=True)
    optimizer = OmegaConf.to_container(cfg.model.optimizer, resolve=True) if cfg.model.optimizer is not None else None
    model = PainClassifier(net=net, optimizer=optimizer, group_by=list(cfg.model.metrics.group_by),
                           init_from=cfg.model.init_from, label_smoothing=cfg.model.label_smoothing)
    callbacks = _instantiate_dict(cfg.callbacks)
    loggers = _instantiate_dict(cfg.logger)
    # Lightning logs the model's and datamodule's hparams; add what else decides the result
    run = {"seed": cfg.seed, "task_name": cfg.task_name, "tags": list(cfg.get("tags") or []),
           "trainer": {k: cfg.trainer.get(k) for k in ("max_epochs", "precision", "accelerator", "devices", "strategy")
                       if k in cfg.trainer}}
    callbacks.append(RunSettingsLogger(run))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return dm, model, trainer


def train(cfg: DictConfig) -> dict:
    """Fit (optionally resuming from ``ckpt_path``), then test the best checkpoint on held-out mice."""
    from painface.config import validate

    cfg = validate(cfg)
    if cfg.ckpt_path:  # resuming: the checkpoint's network must be the configured one
        from painface.config import ConfigError
        from painface.models import checkpoint_hparams

        saved = checkpoint_hparams(cfg.ckpt_path)["net"]
        for key in ("name", "input_size"):
            if saved.get(key) != cfg.model.net[key]:
                raise ConfigError(f"config key 'model.net.{key}': {cfg.model.net[key]!r}, but ckpt_path {cfg.ckpt_path} "
                                  f"was trained with {saved.get(key)!r}; resume with the same model")
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
    from painface.config import ConfigError, validate
    from painface.models import load_classifier

    if not cfg.get("ckpt_path"):
        raise ConfigError("config key 'ckpt_path': eval.py needs ckpt_path=PATH")
    cfg = validate(cfg)
    model = load_classifier(cfg.ckpt_path)  # a bad checkpoint fails before anything else is set up
    import logging

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)  # no device banner
    dm, _, trainer = build(cfg)
    own = model.hparams.net
    if own.get("name") != cfg.model.net.name or own.get("input_size") != cfg.model.net.input_size:
        print(f"note: evaluating the checkpoint's own network ({own.get('name')}, {own.get('input_size')} px), "
              f"not model={cfg.model.net.name} ({cfg.model.net.input_size} px)", file=sys.stderr)
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


def calibration_report(trainer, model, dm, out: Path) -> dict:
    """Reliability diagram and temperature scaling on the held-out mice (beyond the paper)."""
    import numpy as np

    from painface.data import LABELS
    from painface.report import reliability_figure
    from painface.scoring import apply_temperature, expected_calibration_error, fit_temperature

    from painface.predict import predict_trainer

    if not trainer.is_global_zero:
        return {}
    # one device, in this process: under DDP each rank would see only its shard, and
    # under ddp_spawn this process's DataModule was never set up
    dm.setup("fit")
    single = predict_trainer("gpu" if trainer.strategy.root_device.type == "cuda" else "cpu", 1,
                             progress=trainer.progress_bar_callback is not None)
    batches = single.predict(model, dataloaders=dm.val_dataloader())
    if not batches:
        return {}
    p = np.concatenate([b["p_pain"].numpy() for b in batches]).clip(1e-6, 1 - 1e-6)
    ids = [c for b in batches for c in b["crop_id"]]
    y = dm.val_index.set_index("crop_id").loc[ids, "label"].map(LABELS).to_numpy()
    logit = np.log(p / (1 - p))
    t = fit_temperature(np.column_stack([np.zeros_like(logit), logit]), y)
    p_t = apply_temperature(p, t)
    result = {"temperature": t, "ece": expected_calibration_error(p, y), "ece_temperature_scaled": expected_calibration_error(p_t, y),
              "n_crops": int(len(y)), "held_out_mice": sorted(dm.val_index["mouse_id"].unique().tolist())}
    out.mkdir(parents=True, exist_ok=True)
    reliability_figure(p, y, out / "reliability.png", title=f"held-out mice, ECE {result['ece']:.3f}")
    tmp = out / "calibration.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out / "calibration.json")
    return result


def _summarise(cfg, trainer, metrics: dict, ckpt: str, test_role: str | None = None) -> None:
    from painface.stats import StatsError, table1

    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps({"checkpoint": ckpt, "test_on": test_role, "metrics": metrics}, indent=2, sort_keys=True))
    os.replace(tmp, out / "metrics.json")
    try:
        confusion = table1(metrics)
    except StatsError:
        confusion = None
    if confusion is not None:
        tmp = out / "table1.csv.tmp"
        confusion.to_csv(tmp)
        os.replace(tmp, out / "table1.csv")
    images = sorted({str(p.parent) for lg in trainer.loggers if getattr(lg, "log_dir", None)
                     for p in Path(lg.log_dir).glob("images/*.png")})
    lines = [
        "",
        "painface results",
        f"  metrics      {out / 'metrics.json'}",
        *([f"  tested on    {test_role}"] if test_role else []),
        *[f"  {k:<12} {metrics[k]:.3f}" for k in sorted(metrics) if k.startswith("test/") and "=" not in k
          and "confmat" not in k],
        *([f"  Table 1      {out / 'table1.csv'}", *("    " + line for line in _format_table1(confusion).splitlines())]
          if confusion is not None else []),
        f"  checkpoint   {ckpt or '(none)'}",
        *([f"  calibration  {out / 'reliability.png'} (temperature {metrics['calibration/temperature']:.2f})"]
          if "calibration/temperature" in metrics else []),
        *[f"  images       {d}  (confusion matrix, Grad-CAM)" for d in images],
        *[f"  logs         {lg.log_dir}" for lg in trainer.loggers if getattr(lg, "log_dir", None)],
    ]
    print("\n".join(lines))


def _format_table1(t) -> str:
    shown = t.copy()
    for c in ("sensitivity", "specificity"):
        shown[c] = (100 * shown[c]).map(lambda v: f"{v:.1f} %" if v == v else "-")
    return shown.to_string()
