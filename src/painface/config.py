"""One schema for the composed training config, checked once at load time.

An unknown key or a value of the wrong type fails at the start with the key's full
name. Groups whose contents are handed to a constructor (trainer, callbacks, logger)
are checked by that constructor's signature instead, again naming the key.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from painface.errors import PainfaceError


class ConfigError(PainfaceError):
    pass


@dataclass
class NetConfig:
    name: str = "paper"
    input_size: int = 96
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 64, 128, 128])
    fc: list[int] = field(default_factory=lambda: [128, 64])
    dropout: float = 0.0
    weights: Optional[str] = None
    num_classes: int = 2


@dataclass
class MetricsConfig:
    group_by: list[str] = field(default_factory=list)


@dataclass
class ModelConfig:
    _target_: str = "painface.models.PainClassifier"
    net: NetConfig = field(default_factory=NetConfig)
    optimizer: Any = None
    init_from: Optional[str] = None
    label_smoothing: float = 0.0
    metrics: MetricsConfig = field(default_factory=MetricsConfig)


@dataclass
class BuildConfig:
    study: str = MISSING
    workers: int = 2
    crop_size: int = 128
    mice_per_group: Optional[int] = None
    pre_min: Optional[float] = None
    post_min: Optional[float] = None
    fps: Optional[float] = None
    width: Optional[int] = None
    height: Optional[int] = None
    cameras: Optional[int] = None
    signal: Optional[float] = None
    seed: Optional[int] = None
    au_weights: Optional[dict[str, float]] = None


@dataclass
class DataConfig:
    _target_: str = "painface.data.PainFaceDataModule"
    name: str = MISSING
    store: str = MISSING
    build: Optional[BuildConfig] = None
    strains: Optional[list[str]] = None
    sessions: Optional[list[str]] = None
    phases: Optional[list[str]] = None
    mice: Optional[list[str]] = None
    fold: int = 0
    n_folds: int = 4
    split_seed: int = 0
    test_fold: Optional[int] = None
    min_sharpness: Optional[float] = None
    samples_per_epoch: int = 30000
    batch_size: int = 128
    num_workers: int = 2
    pin_memory: bool = False
    persistent_workers: bool = True
    rotation: float = 20.0
    hflip: bool = True


@dataclass
class PathsConfig:
    root_dir: str = "."
    data_dir: str = "data"
    log_dir: str = "logs"
    output_dir: str = "outputs"


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: dict[str, Any] = field(default_factory=dict)
    callbacks: Optional[dict[str, Any]] = field(default_factory=dict)
    logger: Optional[dict[str, Any]] = field(default_factory=dict)
    paths: PathsConfig = field(default_factory=PathsConfig)
    task_name: str = "train"
    tags: list[str] = field(default_factory=list)
    seed: Optional[int] = 42
    ckpt_path: Optional[str] = None
    train: bool = True
    test: bool = True
    matmul_precision: Optional[str] = None
    optimized_metric: Optional[str] = None
    extras: dict[str, Any] = field(default_factory=dict)


KNOWN_DATA = ("synthetic", "balbc", "c57bl6", "store")
KNOWN_NETS = ("paper", "resnet18", "resnet34", "resnet50")


def validate(cfg: DictConfig) -> DictConfig:
    """Merge the composed config into the schema; raise ConfigError naming a bad key."""
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)
    for key in ("experiment", "debug", "hparams_search"):
        plain.pop(key, None)
    schema = OmegaConf.structured(TrainConfig)
    try:
        merged = OmegaConf.merge(schema, plain)
    except (ConfigKeyError, ValidationError) as exc:
        key = getattr(exc, "full_key", None) or ""
        msg = str(exc).splitlines()[0]
        raise ConfigError(f"config key '{key}': {msg}") from None
    name = merged.model.net.name
    if name not in KNOWN_NETS:
        raise ConfigError(f"config key 'model.net.name': unknown model '{name}' (known: {', '.join(KNOWN_NETS)})")
    for group in ("callbacks", "logger"):
        for cb_name, node in (merged[group] or {}).items():
            if node is not None:
                _check_target_kwargs(node, f"{group}.{cb_name}")
    _check_target_kwargs(merged.trainer, "trainer")
    _check_ranges(merged)
    return merged


def _check_ranges(cfg) -> None:
    """Values the schema's types allow but the task cannot use."""
    d = cfg.data
    for key, value, low in (("data.samples_per_epoch", d.samples_per_epoch, 1), ("data.batch_size", d.batch_size, 1),
                            ("data.num_workers", d.num_workers, 0),
                            # the paper CNN halves the map six times
                            ("model.net.input_size", cfg.model.net.input_size, 64 if cfg.model.net.name == "paper" else 32)):
        if value < low:
            raise ConfigError(f"config key '{key}': must be >= {low}, got {value}")
    if d.n_folds < 0:
        raise ConfigError(f"config key 'data.n_folds': must be >= 0 (0 = leave-one-mouse-out), got {d.n_folds}")
    if d.min_sharpness is not None and d.min_sharpness < 0:
        raise ConfigError(f"config key 'data.min_sharpness': must be >= 0, got {d.min_sharpness}")


def _check_target_kwargs(node, where: str) -> None:
    """A typo in a constructor's keyword fails here, with the key's full name."""
    from hydra.utils import get_class

    target = node.get("_target_") if isinstance(node, (dict, DictConfig)) else None
    if not target:
        return
    try:
        cls = get_class(target)
    except Exception as exc:
        raise ConfigError(f"config key '{where}._target_': cannot import '{target}' ({exc})") from None
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    for key in node:
        if not str(key).startswith("_") and key not in params:
            raise ConfigError(f"config key '{where}.{key}': {cls.__name__} has no argument '{key}'")


def one_line_hydra_errors() -> None:
    """Make Hydra's own config errors (a typo'd key, an unknown option) one line on stderr.

    Hydra prints these over several lines with a search-path dump; users asked for one
    line that names the key. HYDRA_FULL_ERROR=1 still gives the full trace. Other
    exceptions keep Hydra's normal reporting.
    """
    import os
    import sys

    import hydra._internal.utils as hydra_utils
    from hydra.errors import CompactHydraException

    original = hydra_utils.run_and_report
    if getattr(original, "_painface", False):
        return

    def run_and_report(func):
        def guarded():
            try:
                return func()
            except CompactHydraException as exc:
                if os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                print(f"error: {hydra_error_line(exc)}", file=sys.stderr)
                sys.exit(1)

        return original(guarded)

    run_and_report._painface = True
    hydra_utils.run_and_report = run_and_report


def hydra_error_line(exc: BaseException) -> str:
    """Fold a Hydra/OmegaConf message (and its cause) into one line, dropping the dumps."""
    text = str(exc)
    if exc.__cause__ is not None and str(exc.__cause__) not in text:
        text += "\n" + str(exc.__cause__)
    parts: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("full_key:", "object_type=", "reference_type=", "provider=")):
            continue
        if line == "Config search path:":
            continue
        parts.append(line)
    override = getattr(exc, "override", None)  # OverrideParseException knows the culprit
    if override:
        parts.insert(0, f"override '{override}':")
    return " ".join(parts)
