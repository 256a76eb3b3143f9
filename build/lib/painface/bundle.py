"""A portable model: safetensors weights, a JSON config and a short model card.

``painface model export RUN --out model/`` writes it from a training run (or a checkpoint);
``painface score --model model/`` loads it without unpickling anything, so a model can be
shared and used without trusting a pickle. The config records the network, its input and
normalisation and the data it was trained on; the card says the same for people.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from painface.errors import PainfaceError

FORMAT = "painface-model"
FORMAT_VERSION = 1


class BundleError(PainfaceError):
    pass


def resolve_checkpoint(run_or_ckpt: str | Path) -> Path:
    """A checkpoint file, or a run folder (its best checkpoint from metrics.json, else last.ckpt)."""
    path = Path(run_or_ckpt)
    if path.is_file():
        return path
    if path.is_dir():
        metrics = path / "metrics.json"
        if metrics.is_file():
            best = json.loads(metrics.read_text()).get("checkpoint")
            if best and Path(best).is_file():
                return Path(best)
        last = path / "checkpoints" / "last.ckpt"
        if last.is_file():
            return last
        raise BundleError(
            f"{path}: no checkpoint in this run folder (no metrics.json checkpoint, no checkpoints/last.ckpt)"
        )
    raise BundleError(f"{path}: no such run folder or checkpoint")


def export_model(run_or_ckpt: str | Path, out: str | Path) -> Path:
    import torch
    from safetensors.torch import save_file

    from painface.models import checkpoint_hparams
    from painface.predict import file_digest

    ckpt = resolve_checkpoint(run_or_ckpt)
    hp = checkpoint_hparams(ckpt)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    weights = {k.removeprefix("net."): v.contiguous() for k, v in state.items() if k.startswith("net.")}
    if not weights:
        raise BundleError(f"{ckpt}: the checkpoint holds no network weights")
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp-export")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(weights, str(tmp / "model.safetensors"))
    provenance = hp.get("painface", {})
    run_metrics = {}
    metrics_file = ckpt.parent.parent / "metrics.json"
    if metrics_file.is_file():
        run_metrics = {
            k: v
            for k, v in json.loads(metrics_file.read_text()).get("metrics", {}).items()
            if k.startswith("test/") and "confmat" not in k
        }
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "net": hp["net"],
        "provenance": provenance,
        "source_checkpoint": str(ckpt.resolve()),
        "source_sha256_head": file_digest(ckpt),
        "test_metrics": run_metrics,
    }
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    (tmp / "MODEL_CARD.md").write_text(model_card(config))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def model_card(config: dict) -> str:
    net = config["net"]
    data = config.get("provenance", {}).get("training_data") or {}
    metrics = config.get("test_metrics") or {}
    lines = [
        "# painface model",
        "",
        f"- network: {net.get('name')} on {net.get('input_size')}-pixel RGB face crops"
        + (f", widths {net.get('channels')}" if net.get("channels") else ""),
        f"- painface version: {config.get('provenance', {}).get('painface_version', '?')}",
        f"- source checkpoint: {config.get('source_checkpoint')} (sha256 head {config.get('source_sha256_head')})",
        "",
        "## Training data",
        "",
    ]
    if data:
        lines += [
            f"- store {data.get('store')} (id {data.get('store_id')}), {data.get('crop_size')} px crops, schema "
            f"{data.get('schema_version')}",
            f"- strains: {', '.join(data.get('strains', []))}; {len(data.get('mice', []))} mice; "
            f"{data.get('sessions')} sessions; {data.get('crops')} crops {data.get('labels')}",
        ]
    else:
        lines.append("- not recorded (a checkpoint from before painface recorded it)")
    lines += ["", "## Test metrics", ""]
    lines += [f"- {k}: {v:.3f}" for k, v in sorted(metrics.items())] or ["- none recorded"]
    lines += [
        "",
        "## Use and limits",
        "",
        "Weakly labelled (pre-injection = no pain, post = pain), as Kobayashi et al. 2025. Apply it to crops made "
        "the same way (painface extract, same crop size) and to the strains it was trained on: the paper's "
        "BALB/c model fails on black C57BL/6 mice.",
        "",
    ]
    return "\n".join(lines)


def load_bundle(folder: str | Path):
    """A PainClassifier from an exported folder, without unpickling."""
    from safetensors.torch import load_file

    from painface.models import PainClassifier

    folder = Path(folder)
    cfg_path, weights = folder / "config.json", folder / "model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise BundleError(f"{folder}: not an exported painface model (needs config.json and model.safetensors)")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{cfg_path}: unreadable ({exc})") from None
    if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{cfg_path}: format {config.get('format')!r} v{config.get('format_version')}, "
            f"this painface reads {FORMAT} v{FORMAT_VERSION}"
        )
    model = PainClassifier(net=config["net"])
    try:
        model.net.load_state_dict(load_file(str(weights)), strict=True)
    except Exception as exc:  # safetensors raises its own error type for a damaged file
        raise BundleError(
            f"{weights}: weights do not fit the config's network ({str(exc).splitlines()[0][:150]})"
        ) from None
    model.provenance = config.get("provenance", {})
    return model
