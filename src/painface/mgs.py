"""Mouse Grimace Scale blind-scoring kit (paper Fig. S3).

``sample`` draws N random crops into a folder under randomised names, with a scoring
sheet for the five action units (0, 1 or 2 each) and a separate key that un-blinds
them. ``compare`` reads the filled sheet, checks every score, un-blinds it and
reports the total MGS by weak label and by CNN prediction, with Spearman's
correlation and the area under the ROC curve of MGS against the weak label.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from painface.errors import PainfaceError
from painface.files import atomic_write
from painface.regions import MGS_UNITS
from painface.scoring import is_pain
from painface.store import CropReader, StoreError, select_index

KEY_FILE = "KEY_do_not_open_until_scored.csv"


class SheetError(PainfaceError):
    pass


def sample(
    store, out, n: int = 1000, seed: int = 0, query: str | None = None, min_sharpness: float | None = None
) -> Path:
    """A blind-scoring kit: ``n`` random crops under meaningless names, a sheet and the key.

    ``min_sharpness``: leave out blurred crops first (the paper excluded blurry images
    before scoring), by the store's per-crop variance of the Laplacian.
    """
    try:
        idx = select_index(store, query)
    except StoreError as exc:
        raise SheetError(f"{exc}, nothing to sample") from None
    if min_sharpness is not None:
        if idx["sharpness"].isna().all():
            raise SheetError(
                f"{store}: the store has no sharpness values (extracted by an older painface); "
                f"re-extract it to use --min-sharpness"
            )
        idx = idx[idx["sharpness"] >= min_sharpness]
        if idx.empty:
            raise SheetError(f"{store}: no crop has sharpness >= {min_sharpness:g}, nothing to sample")
    rng = np.random.default_rng(seed)
    pick = idx.iloc[rng.choice(len(idx), size=min(n, len(idx)), replace=False)].reset_index(drop=True)
    names = [f"mgs_{h}.png" for h in _blind_names(len(pick), rng)]
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    reader = CropReader(store)
    for name, (_, r) in zip(names, pick.iterrows()):
        with atomic_write(out / "images" / name) as tmp:
            cv2.imwrite(str(tmp), reader.read(r["image"], r["offset"], r["nbytes"]))
    order = rng.permutation(len(names))  # the sheet's order reveals nothing about the source
    sheet = pd.DataFrame({"image": [names[i] for i in order], **{u: "" for u in MGS_UNITS}, "exclude": ""})
    _csv(sheet, out / "scoring_sheet.csv")
    _csv(pd.DataFrame({"image": names, "crop_id": pick["crop_id"], "label": pick["label"]}), out / KEY_FILE)
    return out


def _blind_names(n, rng):
    names = set()
    while len(names) < n:
        names.add("".join(rng.choice(list("0123456789abcdef"), 10)))
    return sorted(names, key=lambda _: rng.random())


def read_sheet(path) -> pd.DataFrame:
    """Read a filled sheet; every unit of every image must be 0, 1 or 2, unless the image is
    marked in the optional ``exclude`` column (any text, e.g. "blurry"): then its scores may
    be empty and it is left out of the comparison, as the paper left out blurry images."""
    path = Path(path)
    try:
        sheet = pd.read_csv(path, dtype=str)
    except Exception as exc:
        raise SheetError(f"{path}: unreadable scoring sheet ({exc})") from None
    for col in ("image",) + MGS_UNITS:
        if col not in sheet.columns:
            raise SheetError(f"{path}: missing column '{col}'")
    excluded = (
        sheet["exclude"].fillna("").str.strip() != "" if "exclude" in sheet else pd.Series(False, index=sheet.index)
    )
    for i, row in sheet.iterrows():
        if excluded[i]:
            continue
        for u in MGS_UNITS:
            v = row[u]
            if pd.isna(v) or str(v).strip() == "":
                raise SheetError(f"{path}: row {i + 2} ({row['image']}), column '{u}': missing score")
            try:
                ok = float(v) in (0.0, 1.0, 2.0)  # spreadsheets may write 2 as "2.0"
            except ValueError:
                ok = False
            if not ok:
                raise SheetError(f"{path}: row {i + 2} ({row['image']}), column '{u}': score '{v}' is not 0, 1 or 2")
    sheet = sheet.assign(excluded=excluded)
    scored = ~excluded
    units = sheet.loc[scored, list(MGS_UNITS)].astype(float)
    sheet[list(MGS_UNITS)] = units.reindex(sheet.index)
    sheet["mgs_total"] = units.sum(axis=1).reindex(sheet.index)
    return sheet


def compare(sheet_path, key_path, out, predictions=None) -> dict:
    sheet = read_sheet(sheet_path)
    key = pd.read_csv(key_path)
    data = key.merge(sheet, on="image", how="inner")
    if len(data) != len(key):
        raise SheetError(f"{sheet_path}: {len(key) - len(data)} images of the key are not on the sheet")
    n_excluded = int(data["excluded"].sum())
    data = data[~data["excluded"]].reset_index(drop=True)
    if data.empty:
        raise SheetError(f"{sheet_path}: every image is marked excluded, nothing to compare")
    y = (data["label"] == "pain").astype(int)
    result = {
        "n": int(len(data)),
        "n_excluded": n_excluded,
        "mgs_by_label": data.groupby("label")["mgs_total"].agg(["mean", "sem", "count"]).round(4).to_dict("index"),
    }
    if y.nunique() == 2:
        result["auroc_mgs_vs_label"] = float(roc_auc_score(y, data["mgs_total"]))
    if predictions is not None:
        pred = pd.read_parquet(predictions)[["crop_id", "p_pain"]]
        data = data.merge(pred, on="crop_id", how="left")
        data["cnn"] = np.where(is_pain(data["p_pain"]), "pain", "no_pain")
        rho = spearmanr(data["mgs_total"], data["p_pain"], nan_policy="omit")
        result.update(
            {
                "spearman_mgs_vs_p_pain": float(rho.statistic),
                "spearman_p": float(rho.pvalue),
                "mgs_by_cnn": data.groupby("cnn")["mgs_total"].agg(["mean", "sem", "count"]).round(4).to_dict("index"),
            }
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _csv(data, out / "mgs_unblinded.csv")
    _figure(data, out / "mgs_agreement.png", result)
    import json

    (out / "mgs_summary.json").write_text(json.dumps(result, indent=2))
    return result


def _figure(data: pd.DataFrame, path: Path, result: dict) -> None:
    from painface.figures import pyplot, save_figure

    plt = pyplot()
    cols = ["label"] + (["cnn"] if "cnn" in data else [])
    fig, axes = plt.subplots(1, len(cols) + ("p_pain" in data), figsize=(3.4 * (len(cols) + ("p_pain" in data)), 3.2))
    axes = np.atleast_1d(axes)
    rng = np.random.default_rng(0)
    for ax, col in zip(axes, cols):
        for k, g in enumerate(("no_pain", "pain")):
            v = data.loc[data[col] == g, "mgs_total"].to_numpy()
            ax.scatter(k + rng.uniform(-0.15, 0.15, len(v)), v + rng.uniform(-0.1, 0.1, len(v)), s=6, alpha=0.5)
            if len(v):
                ax.errorbar(
                    k,
                    v.mean(),
                    yerr=v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0,
                    color="k",
                    capsize=4,
                    marker="_",
                    ms=20,
                )
        ax.set_xticks([0, 1], ["no pain", "pain"])
        ax.set_xlabel("weak label" if col == "label" else "CNN prediction")
        ax.set_ylabel("total MGS (0-10)")
    if "p_pain" in data:
        ax = axes[-1]
        ax.scatter(data["p_pain"], data["mgs_total"] + rng.uniform(-0.1, 0.1, len(data)), s=6, alpha=0.5)
        ax.set_xlabel("CNN p(pain)")
        ax.set_ylabel("total MGS")
        ax.set_title(f"Spearman rho {result.get('spearman_mgs_vs_p_pain', float('nan')):.2f}")
    if "auroc_mgs_vs_label" in result:
        axes[0].set_title(f"AUROC vs weak label {result['auroc_mgs_vs_label']:.2f}")
    fig.tight_layout()
    save_figure(fig, path)


def _csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_write(path) as tmp:
        df.to_csv(tmp, index=False)


# ------------------------------------------------------------------ scoring in the browser
SCORES = "scores"  # KIT/scores/<scorer>.csv: one sheet per scorer, in the format read_sheet reads
_SCORER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


def kit_images(kit) -> list[str]:
    """The kit's blinded images in its sheet's order (every scorer sees them in that order)."""
    sheet = Path(kit) / "scoring_sheet.csv"
    if not sheet.is_file():
        raise SheetError(f"{kit}: not an MGS kit (no scoring_sheet.csv; make one with `painface mgs sample`)")
    return pd.read_csv(sheet, dtype=str)["image"].tolist()


def scorer_sheet(kit, scorer: str) -> Path:
    if not _SCORER.match(scorer or ""):
        raise SheetError(f"scorer '{scorer}': use 1-40 letters, digits, '-', '_' or '.', letter or digit first")
    return Path(kit) / SCORES / f"{scorer}.csv"


def load_scores(kit, scorer: str) -> pd.DataFrame:
    """A scorer's sheet so far: every image of the kit, empty cells where not yet scored."""
    images = kit_images(kit)
    path = scorer_sheet(kit, scorer)
    blank = pd.DataFrame({"image": images, **{u: "" for u in MGS_UNITS}, "exclude": ""})
    if not path.is_file():
        return blank
    done = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col in ("image", *MGS_UNITS, "exclude"):
        if col not in done.columns:
            raise SheetError(f"{path}: missing column '{col}'")
    # a hand-edited sheet must not slip a 3 (or "x") into the agreement as a plausible score
    for u in MGS_UNITS:
        for i, v in done[u].items():
            if v.strip() not in ("", "0", "1", "2"):
                raise SheetError(
                    f"{path}: row {i + 2} ({done.at[i, 'image']}), column '{u}': score '{v}' is not 0, 1 or 2"
                )
    done = done.set_index("image")
    return blank.set_index("image").assign(**{c: done[c] for c in (*MGS_UNITS, "exclude")}).fillna("").reset_index()


def save_score(kit, scorer: str, image: str, scores: dict | None, exclude: str = "") -> pd.DataFrame:
    """Record one image's five unit scores (0/1/2), or its exclusion, and rewrite the sheet
    atomically: a crash between two images loses nothing already scored."""
    sheet = load_scores(kit, scorer)
    if image not in set(sheet["image"]):
        raise SheetError(f"{kit}: image '{image}' is not in this kit")
    exclude = str(exclude or "").strip()
    row = sheet.index[sheet["image"] == image][0]
    if exclude:
        sheet.loc[row, list(MGS_UNITS)] = ""
    else:
        for u in MGS_UNITS:
            v = (scores or {}).get(u)
            if str(v) not in ("0", "1", "2"):
                raise SheetError(f"{image}: unit '{u}': score '{v}' is not 0, 1 or 2")
            sheet.loc[row, u] = str(v)
    sheet.loc[row, "exclude"] = exclude
    path = scorer_sheet(kit, scorer)
    path.parent.mkdir(parents=True, exist_ok=True)
    _csv(sheet, path)
    return sheet


def scorers(kit) -> list[str]:
    return sorted(p.stem for p in (Path(kit) / SCORES).glob("*.csv"))


def agreement(kit) -> pd.DataFrame:
    """Inter-rater agreement per pair of scorers: Cohen's kappa (quadratic weights, as the
    scores are ordinal) per action unit and for the total, over images both scored and
    neither excluded (scikit-learn's ``cohen_kappa_score``)."""
    from itertools import combinations

    from sklearn.metrics import cohen_kappa_score

    rows = []
    sheets = {s: load_scores(kit, s).set_index("image") for s in scorers(kit)}
    for a, b in combinations(sheets, 2):
        sa, sb = sheets[a], sheets[b]
        both = [
            i
            for i in sa.index
            if sa.loc[i, "exclude"] == sb.loc[i, "exclude"] == ""
            and all(sa.loc[i, u] != "" and sb.loc[i, u] != "" for u in MGS_UNITS)
        ]
        row = {"scorer_a": a, "scorer_b": b, "n_images": len(both)}
        for u in (*MGS_UNITS, "total"):
            if u == "total":
                x = sa.loc[both, list(MGS_UNITS)].astype(int).sum(axis=1)
                y = sb.loc[both, list(MGS_UNITS)].astype(int).sum(axis=1)
            else:
                x, y = sa.loc[both, u].astype(int), sb.loc[both, u].astype(int)
            # every possible score as a label: sklearn weighs by position in `labels`, so
            # without them a total of 1 vs 6 would count as neighbours when 2-5 went unused
            labels = list(range(2 * len(MGS_UNITS) + 1)) if u == "total" else [0, 1, 2]
            # kappa is undefined when both scorers used a single, identical score throughout
            row[f"kappa_{u}"] = (
                float(cohen_kappa_score(x, y, labels=labels, weights="quadratic"))
                if len(both) and len(set(x) | set(y)) > 1
                else np.nan
            )
        rows.append(row)
    kappas = [f"kappa_{u}" for u in (*MGS_UNITS, "total")]
    return pd.DataFrame(rows, columns=["scorer_a", "scorer_b", "n_images", *kappas])
