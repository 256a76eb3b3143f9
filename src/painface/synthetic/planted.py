"""Planted-region validation: does the region analysis find where the pain signal is?

A synthetic training set is rendered with the pain expression planted in one action unit
only; the paper CNN is trained through ``painface.training.train`` (as ``train.py``), and
``painface.interpret.interpret_store`` (as ``painface interpret``) ranks the facial regions
on mice that neither trained the network nor chose its checkpoint. The planted
region should lead. ``benchmarks/planted_regions.py`` tabulates this over units and seeds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from painface.errors import PainfaceError
from painface.files import write_json
from painface.regions import ACTION_UNITS

#: The facial regions each action unit changes (one table: regions.ACTION_UNITS).
PLANTED_REGIONS = {au: regions for au, (_, regions) in ACTION_UNITS.items()}


def planted_study(au: str, seed: int, mice: int = 12, minutes: float = 0.5, fps: float = 6) -> dict:
    if au not in ACTION_UNITS:
        raise PainfaceError(f"unknown action unit '{au}' (known: {', '.join(ACTION_UNITS)})")
    return {
        "name": f"planted_{au}",
        "generate": {
            "seed": seed,
            "fps": fps,
            "width": 640,
            "height": 360,
            "cameras": 2,
            "pre_min": minutes,
            "post_min": minutes,
            "zero_fraction": 0.0,
            "signal": 3.0,
            "au_weights": {a: float(a == au) for a in ACTION_UNITS},
            "groups": {"ac": {"n": mice, "females": mice // 4, "timeline": [[0, 0.9], [minutes, 0.9]]}},
        },
    }


def planted_run(
    au: str,
    seed: int,
    work: str | Path,
    size: int = 128,
    epochs: int = 15,
    held_out: int = 3,
    samples_per_epoch: int = 2048,
    show_progress: bool = False,
    block: int | None = 4,
) -> dict:
    """Render, extract, train and interpret one planted unit; returns the ranking on held-out mice."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from painface.interpret import interpret_store
    from painface.store import read_index
    from painface.synthetic.store import build_synthetic_store
    from painface.training import train

    settings = {"size": size, "epochs": epochs, "samples_per_epoch": samples_per_epoch, "seed": seed}
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    study = work / "study.yaml"
    study.write_text(yaml.safe_dump(planted_study(au, seed)))
    store = work / "store"
    if not (store / "build.json").exists():
        build_synthetic_store(store, str(study), workers=2, crop_size=size)
    mice = sorted(read_index(store)["mouse_id"].unique())
    train_mice, test_mice = mice[:-held_out], mice[-held_out:]
    conf = Path(__file__).resolve().parents[1] / "conf"
    if not conf.is_dir():
        conf = Path(__file__).resolve().parents[3] / "conf"
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "data=store",
                f"data.store={store}",
                f"data.mice=[{','.join(train_mice)}]",
                "data.n_folds=3",
                f"data.samples_per_epoch={samples_per_epoch}",
                "data.batch_size=64",
                "data.num_workers=0",
                "data.persistent_workers=false",
                # flips only: the maps are compared with keypoint-anchored regions of upright faces
                "data.rotation=0",
                f"model.net.input_size={size}",
                f"trainer.max_epochs={epochs}",
                "trainer.accelerator=cpu",
                f"trainer.enable_progress_bar={str(show_progress).lower()}",
                "~callbacks.gradcam",
                "logger=csv",
                f"seed={seed}",
                f"paths.output_dir={work / 'run'}",
            ],
        )
    done = work / "run" / "metrics.json"
    reused = done.exists() and json.loads(done.read_text()).get("planted_settings") == settings
    if reused:
        metrics = json.loads(done.read_text())["metrics"]  # trained already: only interpret again
    else:
        metrics = train(cfg)
        record = json.loads(done.read_text())
        write_json(done, {**record, "planted_settings": settings})
    ckpt = json.loads(done.read_text())["checkpoint"]
    out = interpret_store(
        ckpt,
        store,
        work / "interpret",
        query=f"mouse_id in {test_mice!r}",
        embedding="tsne",
        seed=seed,
        block=block,
        show_progress=show_progress,
    )
    return {
        "unit": au,
        "seed": seed,
        **planted_ranking(out / "regions_random.csv", au),
        "positivity": planted_ranking(out / "regions_random.csv", au, by="positivity_difference"),
        "contrast": planted_ranking(out / "regions_contrast.csv", au, by="contrast"),
        "val_acc": round(metrics.get("test/acc", float("nan")), 3),
        "held_out_mice": test_mice,
        "settings": {**settings, "block": block},
        "reused_training": reused,
    }


def planted_ranking(regions_csv: str | Path, au: str, by: str = "enrichment_pain") -> dict:
    """Rank (1 = first) of the planted region among the assessed regions ("others" aside),
    its score and the top three, from ``painface interpret``'s table.

    ``by="enrichment_pain"``: Grad-CAM mass share over area share on pain predictions.
    ``by="positivity_difference"``: how much more often the region is Grad-CAM positive
    (touch rule) in pain than in no-pain predictions, the difference Fig. 2C tests.
    ``by="contrast"`` (on ``regions_contrast.csv``): the pain class's Grad-CAM enrichment
    in pain minus no-pain predictions (regions.contrast_table).
    """
    table = pd.read_csv(regions_csv, index_col=0)
    if "assessed" in table:
        table = table[table["assessed"].astype(bool)]
    table = table[table.index != "others"]
    if by == "positivity_difference":
        score = table["freq_pain"] - table["freq_no_pain"]
    elif by == "enrichment_pain":
        score = table["enrichment_pain"]
    elif by == "contrast":
        score = table["difference"]
    else:
        raise PainfaceError(f"unknown ranking '{by}' (use enrichment_pain, positivity_difference or contrast)")
    score = score.sort_values(ascending=False, kind="stable")
    names = list(score.index)
    best = min((r for r in PLANTED_REGIONS[au] if r in names), key=names.index)
    key = "planted_enrichment" if by == "enrichment_pain" else "planted_score"
    return {
        "planted": "/".join(PLANTED_REGIONS[au]),
        "rank": names.index(best) + 1,
        "of": len(names),
        key: round(float(score[best]), 3),
        "top3": [(r, round(float(score[r]), 3)) for r in names[:3]],
    }
