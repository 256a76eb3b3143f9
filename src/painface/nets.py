"""The networks: the paper's CNN, torchvision backbones, the registry that names them, and
the checkpoint's record of which one it holds.

Pure torch, no Lightning: a bad ``model.net`` key or a bad checkpoint fails in the time it
takes to import torch, not Lightning's (2 s against 9 s on 2 cores). ``painface.models``
re-exports everything here, beside the ``PainClassifier`` LightningModule.

Every network splits ``forward_features`` (convolutions) from ``head`` (pooling and
fully connected layers), as timm does, so Grad-CAM's target layer and the features
for embeddings are one attribute away (``net.target_layer``).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
from torch import nn

from painface.errors import PainfaceError


class ModelError(PainfaceError):
    pass


NETS: dict[str, type[nn.Module]] = {}


def register_net(name: str):
    """Make a network selectable as ``model.net.name=NAME`` (as timm's ``register_model``).

    The class takes ``num_classes`` and its own settings as keyword arguments (no ``**kwargs``:
    the config's keys are checked against the signature) and exposes ``forward_features``,
    ``head``, ``blocks`` and ``target_layer``.
    """

    def add(cls):
        if name in NETS:
            raise ModelError(f"model.net.name: '{name}' is registered twice ({NETS[name].__name__}, {cls.__name__})")
        NETS[name] = cls
        return cls

    return add


class FeaturesHead(nn.Module):
    """The timm-style split every built-in network shares: ``features`` (convolutions) then
    ``head`` (pooling, fully connected); a subclass sets both and lists its ``blocks``."""

    @property
    def target_layer(self) -> nn.Module:
        # Grad-CAM on the last conv layer (paper step 8)
        return self.blocks[-1]

    def forward_features(self, x):
        return self.features(x)

    def forward(self, x):
        return self.head(self.forward_features(x))


@register_net("paper")
class PaperCNN(FeaturesHead):
    """Paper step 5: six blocks of conv 3x3 (stride 1) + ReLU + BatchNorm + MaxPool 2x2,
    then global average pooling and three fully connected blocks.

    Table S1 of the paper (exact widths and input size) is not available; the widths
    and input size are config values (see conf/model/paper.yaml).
    """

    def __init__(
        self,
        channels=(16, 32, 64, 64, 128, 128),
        fc=(128, 64),
        num_classes: int = 2,
        in_channels: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__()
        if len(channels) != 6:
            raise ModelError(f"model.net.channels: the paper's CNN has six conv blocks, got {len(channels)} widths")
        blocks, c_in = [], in_channels
        for c in channels:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c, 3, stride=1, padding=1),
                    nn.ReLU(inplace=True),
                    nn.BatchNorm2d(c),
                    nn.MaxPool2d(2, 2),
                )
            )
            c_in = c
        self.features = nn.Sequential(*blocks)
        f1, f2 = fc
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(c_in, f1),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(f1, f2),
            nn.ReLU(inplace=True),
            nn.Linear(f2, num_classes),
        )

    @property
    def blocks(self) -> list[nn.Module]:
        """Each conv block's activations after ReLU+BN, before pooling: Grad-CAM's choices.
        Block k's map is input_size / 2**(k-1) pixels wide (96 px: 96, 48, ..., 3)."""
        return [b[2] for b in self.features]


class TorchvisionNet(FeaturesHead):
    """A torchvision ResNet, never downloading weights; ``weights`` loads a local file."""

    arch = "resnet18"

    def __init__(self, num_classes: int = 2, weights: str | None = None, dropout: float = 0.0):
        super().__init__()
        import torchvision

        name = self.arch
        base = getattr(torchvision.models, name)(weights=None)
        if weights:
            path = Path(weights)
            if not path.is_file():
                raise ModelError(f"model.net.weights: file not found: {path}")
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.get("state_dict", state).items() if not k.startswith("fc.")}
            missing, unexpected = base.load_state_dict(state, strict=False)
            if unexpected or [m for m in missing if not m.startswith("fc.")]:
                raise ModelError(
                    f"{path}: weights do not fit {name} (missing {missing[:3]}, unexpected {unexpected[:3]})"
                )
        self.features = nn.Sequential(
            base.conv1, base.bn1, base.relu, base.maxpool, base.layer1, base.layer2, base.layer3, base.layer4
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(base.fc.in_features, num_classes)
        )

    @property
    def blocks(self) -> list[nn.Module]:
        return list(self.features[4:])  # layer1 .. layer4


@register_net("resnet18")
class ResNet18(TorchvisionNet):
    arch = "resnet18"


@register_net("resnet34")
class ResNet34(TorchvisionNet):
    arch = "resnet34"


@register_net("resnet50")
class ResNet50(TorchvisionNet):
    arch = "resnet50"


def net_class(name: str) -> type[nn.Module]:
    """A registered name (``paper``), or the dotted path of a class in the user's own module
    (``my_lab.nets.TinyNet``), so a lab's network needs no change to painface."""
    if name in NETS:
        return NETS[name]
    if "." in name:
        import importlib

        module, _, attr = name.rpartition(".")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ModelError(f"model.net.name: cannot import '{name}' ({exc})") from None
    raise ModelError(f"model.net.name: unknown model '{name}' (known: {', '.join(sorted(NETS))})")


def net_arguments(name: str) -> dict[str, inspect.Parameter]:
    """The keyword arguments the network ``name`` accepts."""
    params = inspect.signature(net_class(name).__init__).parameters
    return {k: p for k, p in params.items() if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def build_net(name: str = "paper", **kw) -> nn.Module:
    """The registered network ``name``; an argument it does not take fails naming the key."""
    allowed = net_arguments(name)
    for key in kw:
        if key not in allowed:
            raise ModelError(
                f"model.net.{key}: the '{name}' network has no setting '{key}' (it takes: {', '.join(allowed)})"
            )
    return net_class(name)(**kw)


def precheck_model(path: str | Path) -> dict | None:
    """Read before Lightning is imported, so a bad file fails in seconds: a checkpoint's
    checked hyper-parameters (hand them to ``load_classifier(hparams=...)``), or None for a
    folder exported by ``painface model export`` (``load_bundle`` checks that one)."""
    return None if Path(path).is_dir() else checkpoint_hparams(path)


def checkpoint_hparams(ckpt_path: str | Path) -> dict:
    """The saved hyper-parameters of a painface checkpoint, checked to describe its network.

    A file that is not a checkpoint, or one without the network settings (it would be
    rebuilt with default sizes and give plausible but wrong probabilities), fails here.
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise ModelError(f"ckpt_path: checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: empty file, not a checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # pickle, zip and torch raise many kinds for a damaged file
        raise ModelError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ModelError(f"{path}: not a Lightning checkpoint (no state_dict)")
    hp = ckpt.get("hyper_parameters") or {}
    net = hp.get("net") or {}
    missing = [k for k in ("name", "input_size") if k not in net]
    if missing:
        raise ModelError(
            f"{path}: the checkpoint does not record its network's {' and '.join(missing)} "
            f"(hyper_parameters.net); it cannot be rebuilt safely"
        )
    return {**hp, "painface": ckpt.get("painface", {})}


def check_fit(provenance: dict, crop_size: int | None = None, strains=None, source: str = "") -> list[str]:
    """Where the data a model is applied to differ from what it was trained on: one line each."""
    trained = (provenance or {}).get("training_data") or {}
    notes = []
    if crop_size is not None and trained.get("crop_size") not in (None, crop_size):
        notes.append(
            f"note: {source} holds {crop_size} px crops, the model was trained on {trained['crop_size']} px crops"
        )
    new = sorted(set(map(str, [] if strains is None else strains)) - set(trained.get("strains") or []))
    if trained.get("strains") and new:
        notes.append(
            f"note: {source} has strain(s) {', '.join(new)} the model never saw (trained on "
            f"{', '.join(trained['strains'])}); the paper's BALB/c model fails on C57BL/6"
        )
    return notes
