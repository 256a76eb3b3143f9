"""What is the network looking at? (paper step 8, Fig. 2 and S5)

- ``explain``: Grad-CAM (or Grad-CAM++) on the last conv layer, min-max normalised, for
  a sample of a store or a folder of images: original, heatmap and overlay per image
  (the paper's three panels), and all raw maps in one ``maps.npz``;
- ``embed``: images or CNN features -> PCA -> UMAP or t-SNE, a scatter by class, and
  mutual nearest neighbours across the classes: pairs of similar composition;
- ``regions``: Grad-CAM-positive facial regions compared between pain and no-pain
  predictions with chi-squared and Bonferroni correction (Fig. 2C).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from painface.data import CropDataset
from painface.errors import PainfaceError
from painface.files import atomic_write
from painface.gradcam import gradcam_maps, overlay, region_block, tensor_to_rgb01
from painface.models import load_classifier
from painface.predict import FolderDataset
from painface.regions import STAGE_MAX_GREY
from painface.scoring import is_pain
from painface.store import StoreError, select_index


class InterpretError(PainfaceError):
    pass


def _device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_for_explain(ckpt_path):
    model = load_classifier(ckpt_path).to(_device()).eval()
    if getattr(model.net, "target_layer", None) is None or not any(
        isinstance(m, torch.nn.Conv2d) for m in model.net.modules()
    ):
        raise InterpretError(f"{ckpt_path}: the checkpoint's network has no conv layers for Grad-CAM")
    return model


def select(store=None, images=None, n: int = 100, query: str | None = None, seed: int = 0, input_size: int = 96):
    """A dataset of the chosen crops (random ``n`` of a store selection) or of a folder."""
    if images is not None:
        ds = FolderDataset(images, input_size)
        meta = pd.DataFrame({"crop_id": [p.name for p in ds.files], "label": "unknown"})
        return ds, meta
    try:
        idx = select_index(store, query, n, seed)
    except StoreError as exc:
        raise InterpretError(f"{exc}, nothing to explain") from None
    return CropDataset(store, idx, input_size, train=False), idx


def run_gradcam(
    model,
    ds,
    method: str = "gradcam",
    batch_size: int = 32,
    show_progress: bool = True,
    block: int | None = None,
    target: int | None = None,
):
    """Maps (n, H, W), p(pain) (n,), images as RGB floats (n, H, W, 3) and penultimate features.
    Each map explains the predicted class, or class ``target`` (1 = pain) for every image."""
    maps, probs, rgbs, feats = [], [], [], []
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)
    for batch in tqdm(loader, desc=f"{method}", unit="batch", disable=not show_progress):
        x = batch["image"].to(model.device)
        with torch.no_grad():
            f = model.net.forward_features(x)
            probs.append(torch.softmax(model.net.head(f), 1)[:, 1].cpu().numpy())
            feats.append(f.mean(dim=(2, 3)).cpu().numpy())
        # explain the predicted class, as the paper's overlays do
        targets = is_pain(probs[-1]).astype(int).tolist() if target is None else [target] * len(x)
        maps.append(gradcam_maps(model.net, x, targets=targets, method=method, block=block))
        rgbs.extend(tensor_to_rgb01(t) for t in batch["image"])
    return np.concatenate(maps), np.concatenate(probs), np.stack(rgbs), np.concatenate(feats)


def three_panels(rgb01: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """Original | heatmap | overlay (paper Fig. 2A), RGB uint8."""
    heat = cv2.applyColorMap((cam * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return np.hstack([(rgb01 * 255).astype(np.uint8), heat, overlay(rgb01, cam)])


def _write_png(path: Path, rgb: np.ndarray) -> None:
    with atomic_write(path) as tmp:
        cv2.imwrite(str(tmp), np.ascontiguousarray(rgb[..., ::-1]))


def explain(
    ckpt_path,
    out,
    store=None,
    images=None,
    n: int = 100,
    method: str = "gradcam",
    query=None,
    seed: int = 0,
    show_progress: bool = True,
) -> Path:
    if n < 1:
        raise InterpretError(f"--n: explain at least one image, got {n}")
    model = load_for_explain(ckpt_path)
    ds, meta = select(store, images, n, query, seed, model.input_size)
    maps, probs, rgbs, feats = run_gradcam(model, ds, method, show_progress=show_progress)
    out = Path(out)
    (out / "panels").mkdir(parents=True, exist_ok=True)
    for i, cid in enumerate(meta["crop_id"]):
        _write_png(
            out / "panels" / f"{i:05d}_{str(cid).replace('/', '__')}_p{probs[i]:.2f}.png",
            three_panels(rgbs[i], maps[i]),
        )
    with atomic_write(out / "maps.npz") as tmp:
        np.savez_compressed(
            tmp,
            maps=maps.astype(np.float16),
            p_pain=probs,
            crop_id=np.asarray(meta["crop_id"], str),
            features=feats,
            method=method,
        )
    meta.assign(p_pain=probs).to_csv(out / "explained.csv", index=False)
    return out


# ------------------------------------------------------------------ embeddings and pairs
def embed_2d(x: np.ndarray, method: str = "umap", seed: int = 0, n_pca: int = 50) -> np.ndarray:
    """PCA, then UMAP (umap-learn) or t-SNE (scikit-learn) to two dimensions."""
    from sklearn.decomposition import PCA

    x = x.reshape(len(x), -1).astype(np.float32)
    z = PCA(n_components=min(n_pca, *x.shape), random_state=seed).fit_transform(x)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise InterpretError(
                "--embedding umap needs umap-learn: pip install 'painface[umap]' (or use --embedding tsne)"
            ) from None

        return umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(z) - 1)).fit_transform(z)
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(n_components=2, random_state=seed, perplexity=min(30, max(len(z) // 4, 2))).fit_transform(z)
    raise InterpretError(f"embedding method '{method}' unknown (use umap or tsne)")


def mutual_pairs(x: np.ndarray, is_pain: np.ndarray) -> np.ndarray:
    """(i_pain, j_no_pain) index pairs that are each other's nearest neighbour across the classes:
    images of similar composition with opposite class (paper Fig. S5)."""
    from sklearn.neighbors import NearestNeighbors

    x = x.reshape(len(x), -1)
    a, b = np.flatnonzero(is_pain), np.flatnonzero(~is_pain)
    if not len(a) or not len(b):
        return np.zeros((0, 2), int)
    ab = NearestNeighbors(n_neighbors=1).fit(x[b]).kneighbors(x[a], return_distance=False)[:, 0]
    ba = NearestNeighbors(n_neighbors=1).fit(x[a]).kneighbors(x[b], return_distance=False)[:, 0]
    return np.array([(a[i], b[j]) for i, j in enumerate(ab) if ba[j] == i], int).reshape(-1, 2)


def embedding_figure(xy: np.ndarray, is_pain: np.ndarray, pairs: np.ndarray, out: Path, title: str) -> Path:
    from painface.figures import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for flag, colour, name in ((False, "#0072b2", "no pain"), (True, "#d55e00", "pain")):
        m = is_pain == flag
        ax.scatter(xy[m, 0], xy[m, 1], s=8, alpha=0.7, color=colour, label=name)
    for i, j in pairs:
        ax.plot(xy[[i, j], 0], xy[[i, j], 1], color="k", lw=0.4, alpha=0.5)
    ax.legend(frameon=False)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return save_figure(fig, out)


def pairs_sheet(rgbs, maps, probs, pairs, out: Path, n: int = 12) -> Path:
    """Pain / no-pain pairs of similar composition with their Grad-CAM overlays (Fig. 2A)."""
    rows = []
    for i, j in pairs[:n]:
        tiles = []
        for k in (i, j):
            o = overlay(rgbs[k], maps[k]).copy()
            cv2.putText(o, f"{probs[k]:.2f}", (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
            tiles += [(rgbs[k] * 255).astype(np.uint8), o]
        rows.append(np.hstack(tiles))
    if not rows:
        raise InterpretError("no mutual-nearest-neighbour pairs across the classes")
    _write_png(out, np.vstack(rows))
    return out


# ------------------------------------------------------------------ regions
def regions_sheet(
    rgbs, keypoints, out: Path, n: int = 12, per_row: int = 6, stage_max_grey: float = STAGE_MAX_GREY
) -> Path:
    """The automatic region masks drawn over sample crops, with a legend, so a person can check them."""
    from painface.regions import COLOURS, draw_regions, region_masks_from_keypoints

    size = rgbs.shape[1]
    tiles = []
    for rgb, kp in zip(rgbs[:n], keypoints[:n]):
        bgr = np.ascontiguousarray((rgb[..., ::-1] * 255).astype(np.uint8))
        tile = draw_regions(bgr, region_masks_from_keypoints(size, *kp, image=rgb, stage_max_grey=stage_max_grey))[
            ..., ::-1
        ]
        zoom = max(1, 128 // size)  # small model inputs are hard to check by eye
        tiles.append(cv2.resize(np.ascontiguousarray(tile), None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST))
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % per_row)
    grid = np.vstack([np.hstack(tiles[i : i + per_row]) for i in range(0, len(tiles), per_row)])
    legend = np.full((18 * ((len(COLOURS) + 3) // 4), grid.shape[1], 3), 255, np.uint8)
    step = grid.shape[1] // 4
    for k, (name, colour) in enumerate(COLOURS.items()):
        x, y = (k % 4) * step + 4, (k // 4) * 18 + 4
        cv2.rectangle(legend, (x, y), (x + 10, y + 10), colour, -1)
        cv2.putText(legend, name, (x + 14, y + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    _write_png(out, np.vstack([grid, legend]))
    return out


def region_figure(table: pd.DataFrame, stats: pd.DataFrame, out: Path, title: str) -> Path:
    from painface.figures import pyplot, save_figure

    plt = pyplot()
    t = table.sort_values("enrichment_pain", ascending=False)
    x = np.arange(len(t))
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(t), 3.4))
    ax.bar(x - 0.2, 100 * t["freq_no_pain"], width=0.4, color="#0072b2", label="no pain")
    ax.bar(x + 0.2, 100 * t["freq_pain"], width=0.4, color="#d55e00", label="pain")
    s = stats.set_index("category")
    for k, r in enumerate(t.index):
        if r in s.index and s.loc[r, "stars"] != "n.s.":
            ax.text(k, 100 * max(t.loc[r, "freq_pain"], t.loc[r, "freq_no_pain"]) + 3, s.loc[r, "stars"], ha="center")
    ax.set_xticks(x, t.index, rotation=40, ha="right")
    ax.set_ylabel("Grad-CAM positive (% of images)")
    ax.set_ylim(0, 115)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(title)
    return save_figure(fig, out)


def analyse_regions(
    maps,
    keypoints,
    p_pain,
    out: Path,
    name: str,
    threshold=0.5,
    min_fraction=None,
    visible_threshold=0.5,
    manual=None,
    images=None,
    stage_max_grey=STAGE_MAX_GREY,
    yates: bool = False,
) -> pd.DataFrame:
    """Region positivity, pain vs no-pain, over the paper's 13 regions (Fig. 2C, S5F).

    chi-squared per region, Bonferroni over all 13; a region no image could show (the
    hand, without a manual annotation) is kept in the table as not assessed.
    """
    from painface.regions import PAPER_REGIONS, attribution_table
    from painface.stats import chi2_bonferroni

    table = attribution_table(
        maps, keypoints, is_pain(p_pain), threshold, min_fraction, visible_threshold, manual, images, stage_max_grey
    )
    counts = table[["positive_pain", "positive_no_pain"]].rename(
        columns={"positive_pain": "pain", "positive_no_pain": "no_pain"}
    )
    totals = pd.Series({"pain": table["n_pain"].iloc[0], "no_pain": table["n_no_pain"].iloc[0]})
    if (totals == 0).any():
        raise InterpretError(
            f"{name}: the selection has no {'pain' if totals['pain'] == 0 else 'no-pain'} predictions to compare"
        )
    stats = chi2_bonferroni(counts, totals, yates=yates, n_tests=len(PAPER_REGIONS))
    table = table.join(stats.set_index("category")[["chi2", "p", "p_bonferroni", "stars"]])
    table["assessed"] = True
    for region in PAPER_REGIONS:
        if region not in table.index:  # e.g. the hand: no keypoint places it, only a manual annotation
            table.loc[region, ["assessed", "stars"]] = [False, "not assessed"]
    table["yates"] = yates
    table["bonferroni_tests"] = len(PAPER_REGIONS)
    table["rule"] = "touch" if min_fraction is None else f"area>={min_fraction:g}"
    table.to_csv(out / f"regions_{name}.csv")
    region_figure(
        table[table["assessed"].astype(bool)], stats, out / f"regions_{name}.png", f"Grad-CAM positive regions ({name})"
    )
    return table


def contrast_regions(
    model, ds, keypoints, maps, probs, rgbs, out: Path, method, block, show_progress, stage_max_grey
) -> pd.DataFrame:
    """regions_contrast.csv/.png: the pain class's Grad-CAM on every image of the random draw,
    compared between predicted pain and predicted no pain (regions.contrast_table). Beyond
    the paper: its per-class maps explain each image's own prediction, so a region the
    network looks at in every face ranks high whatever the expression.

    ``maps``, ``probs`` and ``rgbs`` are the predicted-class Grad-CAM of ``ds``: for an image
    predicted pain that already is the pain class's map, so only the others run again."""
    from torch.utils.data import Subset

    from painface.regions import contrast_table, per_image_regions

    pain = is_pain(probs)
    maps = maps.copy()
    redo = np.flatnonzero(~pain)
    if len(redo):
        maps[redo] = run_gradcam(
            model, Subset(ds, redo.tolist()), method, show_progress=show_progress, block=block, target=1
        )[0]
    table = contrast_table(per_image_regions(maps, keypoints, pain, images=rgbs, stage_max_grey=stage_max_grey))
    table = table.drop(index="others", errors="ignore")
    table.to_csv(out / "regions_contrast.csv")
    contrast_figure(table, out / "regions_contrast.png")
    return table


def contrast_figure(table: pd.DataFrame, out: Path) -> Path:
    from painface.figures import pyplot, save_figure
    from painface.stats import stars

    plt = pyplot()
    x = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(table), 3.4))
    ax.bar(x, table["difference"], color=np.where(table["difference"] > 0, "#d55e00", "#0072b2"))
    for k, (d, p) in enumerate(zip(table["difference"], table["p_bonferroni"])):
        if np.isfinite(p) and p < 0.05:
            ax.text(k, d, stars(p), ha="center", va="bottom" if d > 0 else "top")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, table.index, rotation=40, ha="right")
    ax.set_ylabel("pain-class Grad-CAM enrichment,\npain - no-pain images")
    ax.set_title("Where the pain evidence differs (Welch, Bonferroni 13)")
    return save_figure(fig, out)


def run_forward(model, ds, batch_size: int = 64, thumbnails: bool = False, show_progress: bool = True):
    """p(pain), pooled conv features and (optionally) 32x32 grey thumbnails of a whole selection,
    without Grad-CAM: cheap enough for every image of a store."""
    probs, feats, thumbs = [], [], []
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)
    for batch in tqdm(loader, desc="features", unit="batch", disable=not show_progress):
        x = batch["image"].to(model.device)
        with torch.no_grad():
            f = model.net.forward_features(x)
            probs.append(torch.softmax(model.net.head(f), 1)[:, 1].cpu().numpy())
            feats.append(f.mean(dim=(2, 3)).cpu().numpy())
        if thumbnails:
            thumbs.extend(
                cv2.resize(
                    cv2.cvtColor((tensor_to_rgb01(t) * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY), (32, 32)
                ).astype(np.float32)
                for t in batch["image"]
            )
    return np.concatenate(probs), np.concatenate(feats), (np.stack(thumbs) if thumbnails else None)


def draw_pairs(pairs: np.ndarray, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``n_pairs`` of the pairs, drawn at random without replacement (the paper: 500)."""
    if len(pairs) > n_pairs:
        pairs = pairs[np.sort(rng.choice(len(pairs), n_pairs, replace=False))]
    return pairs


def balanced_draw(pain: np.ndarray, per_class: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``per_class`` images predicted pain and as many predicted no pain, at random
    (Fig. S5F: 1,000 each); all of a class when it has fewer; everything when ``per_class`` is None."""
    if per_class is None:
        return np.arange(len(pain))
    picked = []
    for flag in (True, False):
        idx = np.flatnonzero(pain == flag)
        picked.append(idx if len(idx) <= per_class else rng.choice(idx, per_class, replace=False))
    return np.sort(np.concatenate(picked))


def interpret_store(
    ckpt_path,
    store,
    out,
    n: int | None = None,
    n_pairs: int = 500,
    per_class: int | None = 1000,
    method: str = "gradcam",
    embedding: str = "umap",
    source: str = "features",
    pair_space: str = "embedding",
    query=None,
    seed: int = 0,
    threshold: float = 0.5,
    min_fraction: float | None = None,
    yates: bool = False,
    block: int | str | None = "auto",
    annotation=None,
    show_progress=True,
    stage_max_grey: float = STAGE_MAX_GREY,
) -> Path:
    """Fig. 2 for a store: embedding, similar-composition pairs, and region positivity.

    The paper's procedure by default: every image of the selection (or a random ``n``) is
    projected to 2-D (UMAP of CNN features), pain and no-pain images that are each other's
    nearest neighbour *in that projection* are paired, and ``n_pairs`` pairs are drawn at
    random (Fig. 2A, S5B-E). ``pair_space="features"`` pairs in the full feature space
    instead. Region positivity is compared on the pairs and on a random draw of
    ``per_class`` images of each predicted class (Fig. S5F). Grad-CAM runs only on the
    images that are analysed.
    """
    from torch.utils.data import Subset

    from painface.regions import crop_keypoints, masks_from_annotation

    if pair_space not in ("embedding", "features"):
        raise InterpretError(f"pair space '{pair_space}' unknown (use embedding or features)")
    if n_pairs < 0 or (per_class is not None and per_class < 1) or (n is not None and n < 2):
        raise InterpretError("--pairs must be >= 0, --per-class >= 1 and --n >= 2")
    model = load_for_explain(ckpt_path)
    if block == "auto":  # a map fine enough to tell the 13 regions apart (gradcam.REGION_MAP_PX)
        block = region_block(model.net, model.input_size)
    ds, idx = select(store, None, n, query, seed, model.input_size)
    probs, feats, thumbs = run_forward(model, ds, thumbnails=source == "pixels", show_progress=show_progress)
    x = feats if source == "features" else thumbs
    pain = is_pain(probs)
    rng = np.random.default_rng(seed)
    xy = embed_2d(x, embedding, seed)
    found = mutual_pairs(xy if pair_space == "embedding" else x, pain)
    pairs = draw_pairs(found, n_pairs, rng)
    random_sel = balanced_draw(pain, per_class, rng)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    embedding_figure(
        xy,
        pain,
        pairs,
        out / "embedding.png",
        f"{embedding.upper()} of CNN {source}, {len(pairs)} pairs ({pair_space})",
    )
    # Grad-CAM on what is analysed: the pairs and the random draw
    need = np.union1d(pairs.ravel(), random_sel).astype(int)
    maps_sub, probs_sub, rgbs_sub, _ = run_gradcam(
        model, Subset(ds, need.tolist()), method, show_progress=show_progress, block=block
    )
    at = {int(k): i for i, k in enumerate(need)}  # selection index -> row of the Grad-CAM arrays
    sub = lambda sel: np.array([at[int(k)] for k in sel], int)  # noqa: E731
    size = maps_sub.shape[-1]
    kp = crop_keypoints(idx.iloc[need], size)  # frame pixels -> the model input's pixels, where the maps live
    manual = None
    if annotation:
        ann = masks_from_annotation(annotation, size)
        manual = [ann.get(c) for c in idx["crop_id"].to_numpy()[need]]
    pd.DataFrame(
        {
            "pain_crop": idx["crop_id"].to_numpy()[pairs[:, 0]],
            "no_pain_crop": idx["crop_id"].to_numpy()[pairs[:, 1]],
            "p_pain_of_pain_crop": probs[pairs[:, 0]],
            "p_pain_of_no_pain_crop": probs[pairs[:, 1]],
        }
    ).to_csv(out / "pairs.csv", index=False)
    if len(pairs):
        pairs_sheet(
            rgbs_sub, maps_sub, probs_sub, np.column_stack([sub(pairs[:, 0]), sub(pairs[:, 1])]), out / "pairs.png"
        )
    random_rows = sub(random_sel)  # the random draw's rows of the Grad-CAM arrays
    regions_sheet(rgbs_sub[random_rows], kp[random_rows], out / "regions.png", stage_max_grey=stage_max_grey)
    opts = dict(threshold=threshold, min_fraction=min_fraction, stage_max_grey=stage_max_grey, yates=yates)

    def analyse(rows, name):
        analyse_regions(
            maps_sub[rows],
            kp[rows],
            probs_sub[rows],
            out,
            name,
            manual=[manual[i] for i in rows] if manual else None,
            images=rgbs_sub[rows],
            **opts,
        )

    analyse(random_rows, "random")
    if len(pairs):
        analyse(sub(pairs.ravel()), "pairs")
    contrast_regions(
        model,
        Subset(ds, random_sel.tolist()),
        kp[random_rows],
        maps_sub[random_rows],
        probs_sub[random_rows],
        rgbs_sub[random_rows],
        out,
        method,
        block,
        show_progress,
        stage_max_grey,
    )
    np.savez_compressed(
        out / "maps.npz", maps=maps_sub.astype(np.float16), p_pain=probs_sub, crop_id=idx["crop_id"].to_numpy(str)[need]
    )
    (out / "settings.json").write_text(
        json.dumps(
            {
                "selection": len(idx),
                "query": query,
                "pairs_found": int(len(found)),
                "pairs_drawn": int(len(pairs)),
                "pair_space": pair_space,
                "embedding": embedding,
                "source": source,
                "per_class": per_class,
                "random_pain": int(pain[random_sel].sum()),
                "random_no_pain": int((~pain[random_sel]).sum()),
                "method": method,
                "gradcam_block": block if block is not None else "last",
                "gradcam_map_px": int(size),
                "threshold": threshold,
                "positivity_rule": "touch" if min_fraction is None else f"area>={min_fraction:g}",
                "chi2_yates": yates,
                "contrast": "pain-class Grad-CAM enrichment, predicted pain - predicted no pain (random draw)",
                "bonferroni_tests": 13,
                "seed": seed,
            },
            indent=2,
        )
    )
    return out
