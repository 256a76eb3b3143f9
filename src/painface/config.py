"""One schema for the composed training config, checked once at load time.

An unknown key or a value of the wrong type fails at the start with the key's full
name. Groups whose contents are handed to a constructor (trainer, callbacks, logger)
are checked by that constructor's signature instead, again naming the key.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from painface import defaults
from painface.errors import PainfaceError


class ConfigError(PainfaceError):
    pass


DEFAULT_MODEL = "painface.models.PainClassifier"
DEFAULT_DATA = "painface.data.PainFaceDataModule"


@dataclass
class NetConfig:
    # the keys every network has; the rest (channels, fc, dropout, weights, ...) are the
    # registered network's own keyword arguments, checked against its signature
    name: str = "paper"
    input_size: int = 96


@dataclass
class MetricsConfig:
    group_by: list[str] = field(default_factory=list)


@dataclass
class ModelConfig:
    _target_: str = DEFAULT_MODEL
    net: Any = field(default_factory=lambda: {"name": "paper", "input_size": 96})
    optimizer: Any = None
    init_from: str | None = None
    label_smoothing: float = 0.0
    metrics: MetricsConfig = field(default_factory=MetricsConfig)


@dataclass
class BuildConfig:
    study: str = MISSING
    workers: int = 2
    crop_size: int = defaults.CROP_SIZE
    mice_per_group: int | None = None
    pre_min: float | None = None
    post_min: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    cameras: int | None = None
    signal: float | None = None
    seed: int | None = None
    au_weights: dict[str, float] | None = None


@dataclass
class DataConfig:
    _target_: str = DEFAULT_DATA
    name: str = MISSING
    store: str = MISSING
    build: BuildConfig | None = None
    strains: list[str] | None = None
    sessions: list[str] | None = None
    phases: list[str] | None = None
    mice: list[str] | None = None
    fold: int = 0
    n_folds: int = 4
    split_seed: int = 0
    test_fold: int | None = None
    min_sharpness: float | None = None
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
    # checked by their own schema (or, for a user's own _target_, by its signature) in validate()
    data: Any = None
    model: Any = None
    trainer: dict[str, Any] = field(default_factory=dict)
    callbacks: dict[str, Any] | None = field(default_factory=dict)
    logger: dict[str, Any] | None = field(default_factory=dict)
    paths: PathsConfig = field(default_factory=PathsConfig)
    task_name: str = "train"
    tags: list[str] = field(default_factory=list)
    seed: int | None = 42
    ckpt_path: str | None = None
    train: bool = True
    test: bool = True
    matmul_precision: str | None = None
    optimized_metric: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def _merge(schema, plain, prefix: str = ""):
    try:
        return OmegaConf.merge(OmegaConf.structured(schema), plain)
    except (ConfigKeyError, ValidationError) as exc:
        key = getattr(exc, "full_key", None) or ""
        msg = str(exc).splitlines()[0]
        raise ConfigError(f"config key '{prefix}{key}': {msg}") from None


def validate(cfg: DictConfig) -> DictConfig:
    """Merge the composed config into the schema; raise ConfigError naming a bad key.

    ``model`` and ``data`` are checked against painface's schema when their ``_target_`` is
    painface's own class; a user's own ``_target_`` is checked against its signature.
    """
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)
    for key in ("experiment", "debug", "hparams_search"):
        plain.pop(key, None)
    groups = {g: plain.pop(g, None) or {} for g in ("model", "data")}
    merged = _merge(TrainConfig, plain)
    for group, schema, default in (("model", ModelConfig, DEFAULT_MODEL), ("data", DataConfig, DEFAULT_DATA)):
        node = groups[group]
        if node.get("_target_", default) == default:
            node = _merge(schema, node, prefix=f"{group}.")
        else:
            _check_target_kwargs(node, group)
        merged[group] = node
    if merged.model._target_ == DEFAULT_MODEL:
        _check_net(merged.model.net)
    _check_ranges(merged)  # before the checks below, which import Lightning's classes (6 s)
    for group in ("callbacks", "logger"):
        for cb_name, node in (merged[group] or {}).items():
            if node is not None:
                _check_target_kwargs(node, f"{group}.{cb_name}")
    _check_target_kwargs(merged.trainer, "trainer")
    return merged


def _check_net(net) -> None:
    """The network's name is registered and each of its keys is an argument of that network."""
    from painface.nets import ModelError, net_arguments

    for key in ("name", "input_size"):
        if key not in net:
            raise ConfigError(f"config key 'model.net.{key}': missing (every network needs it)")
    if not isinstance(net.input_size, int):
        raise ConfigError(f"config key 'model.net.input_size': must be an integer, got {net.input_size!r}")
    try:
        allowed = net_arguments(net.name)
    except ModelError as exc:
        key, _, why = str(exc).partition(": ")
        raise ConfigError(f"config key '{key}': {why}") from None
    for key in net:
        if key not in ("name", "input_size") and key not in allowed:
            raise ConfigError(
                f"config key 'model.net.{key}': the '{net.name}' network has no setting '{key}' "
                f"(it takes: {', '.join(allowed)})"
            )


def _check_ranges(cfg) -> None:
    """Values the schema's types allow but the task cannot use."""
    if cfg.data.get("_target_") != DEFAULT_DATA or cfg.model.get("_target_") != DEFAULT_MODEL:
        return  # a user's own classes check their own values
    d = cfg.data
    for key, value, low in (
        ("data.samples_per_epoch", d.samples_per_epoch, 1),
        ("data.batch_size", d.batch_size, 1),
        ("data.num_workers", d.num_workers, 0),
        # the paper CNN halves the map six times
        ("model.net.input_size", cfg.model.net.input_size, 64 if cfg.model.net.name == "paper" else 32),
    ):
        if value < low:
            raise ConfigError(f"config key '{key}': must be >= {low}, got {value}")
    if d.n_folds < 0:
        raise ConfigError(f"config key 'data.n_folds': must be >= 0 (0 = leave-one-mouse-out), got {d.n_folds}")
    if d.min_sharpness is not None and d.min_sharpness < 0:
        raise ConfigError(f"config key 'data.min_sharpness': must be >= 0, got {d.min_sharpness}")


def _init_arguments(cls) -> set[str] | None:
    """The keyword arguments ``cls(...)`` accepts, following ``**kwargs`` to the base classes
    (a subclass that passes ``**kw`` on to PainClassifier takes PainClassifier's arguments)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names
    return None


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
    params = _init_arguments(cls)
    if params is None:  # **kwargs all the way up: the class takes anything
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
