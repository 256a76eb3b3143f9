"""Facial regions of a crop, from its keypoints, and Grad-CAM attribution to them (paper Fig. 2B/C).

The paper annotated 13 regions by hand. We build them geometrically from the
eye-nose triangle: with "up" pointing from the nose past the eyes and "lateral" along
the eye line (or the snout, in profile), each region is a disc or band placed in units
of the inter-ocular (frontal) or eye-nose (profile) distance. Regions are made exclusive
by priority (eye before cheek before head, ...), and drawn on the crop so that a person
can check them (``draw_regions``).
The stage (the paper's black platform) is found from the image when one is given:
dark pixels below the face. Hands have no keypoint to anchor them and come only from
a manual annotation file (``masks_from_annotation``).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from painface.errors import PainfaceError


class RegionError(PainfaceError):
    """A bad region annotation file."""


#: Exclusive by priority, most specific first; "others" is whatever is left.
AUTO_REGIONS = (
    "eye",
    "nose",
    "mouth",
    "cheek",
    "ear_base",
    "ear_top",
    "above_ear",
    "forehead",
    "head",
    "stage",
    "underbody",
)
#: The face's one vocabulary: each action unit the synthetic renderer plants, the Mouse Grimace
#: Scale unit a person scores it by (Langford et al. 2010; none for the forehead), and the
#: regions above that it changes. Whiskers grow from the whisker pad, which the table calls cheek.
ACTION_UNITS = {
    "orbital": ("orbital_tightening", ("eye",)),
    "nose": ("nose_bulge", ("nose",)),
    "cheek": ("cheek_bulge", ("cheek",)),
    "ear": ("ear_position", ("ear_base", "ear_top")),
    "whisker": ("whisker_change", ("cheek",)),
    "forehead": (None, ("forehead",)),
}
MGS_UNITS = tuple(mgs for mgs, _ in ACTION_UNITS.values() if mgs)
#: grey level (0-255) below which a pixel under the face counts as the black stage
STAGE_MAX_GREY = 28
PAPER_REGIONS = (
    "head",
    "forehead",
    "above_ear",
    "ear_top",
    "ear_base",
    "eye",
    "cheek",
    "nose",
    "mouth",
    "hand",
    "stage",
    "underbody",
    "others",
)
COLOURS = {
    "eye": (255, 60, 60),
    "nose": (255, 150, 200),
    "mouth": (200, 80, 255),
    "cheek": (255, 200, 60),
    "ear_base": (60, 200, 60),
    "ear_top": (30, 130, 30),
    "above_ear": (150, 255, 150),
    "forehead": (60, 200, 255),
    "head": (60, 100, 255),
    "underbody": (150, 150, 150),
    "others": (40, 40, 40),
    "hand": (255, 255, 0),
    "stage": (90, 60, 30),
}


def _frame(nose, right, left, visible_threshold):
    """Origin (eye midpoint), nose, unit length D, and the up / lateral unit vectors.

    D is the inter-ocular distance when both eyes are visible (frontal views foreshorten
    the eye-nose distance) and the eye-nose distance in profile.
    """
    eyes = [np.asarray(e, float) for e in (right, left) if e[2] >= visible_threshold]
    nose = np.asarray(nose[:2], float)
    if not eyes:
        return None
    mid = np.mean([e[:2] for e in eyes], axis=0)
    if len(eyes) == 2:
        lateral = eyes[1][:2] - eyes[0][:2]
        d = max(float(np.linalg.norm(lateral)), 1.0)
        lateral = lateral / d
        perp = np.array([lateral[1], -lateral[0]])
        side = perp @ (mid - nose) / d
        # away from the nose; when the nose is nearly on the eye line (head pitched), toward the image top
        up = (perp if side > 0 else -perp) if abs(side) > 0.15 else (perp if perp[1] < 0 else -perp)
    else:
        # profile: the snout axis runs nose -> eye; "up" is perpendicular to it, toward the image top
        d = max(float(np.linalg.norm(mid - nose)), 1.0)
        lateral = (mid - nose) / d
        perp = np.array([lateral[1], -lateral[0]])
        up = perp if perp[1] < 0 else -perp
    return mid, nose, d, up, lateral, eyes


def region_masks_from_keypoints(
    size: int,
    nose,
    right_eye,
    left_eye,
    visible_threshold: float = 0.5,
    image: np.ndarray | None = None,
    stage_max_grey: float = STAGE_MAX_GREY,
) -> dict[str, np.ndarray]:
    """Exclusive boolean masks (size x size) of each automatic region plus "others".

    ``image`` (size x size, RGB or grey, uint8 or 0-1 floats) enables the stage region:
    pixels below the face darker than ``stage_max_grey``. A black-coated mouse can be as
    dark as the stage; check the drawn regions (``draw_regions``) and lower the threshold.

    Keypoints are (x, y, likelihood-or-visibility) in crop pixels. Bands are in units of
    D (see ``_frame``): u is the height above the eyes, v the position along the eye
    line (frontal) or the snout axis, positive behind the eye (profile).
    """
    out = {r: np.zeros((size, size), bool) for r in AUTO_REGIONS + ("others",)}
    frame = _frame(nose, right_eye, left_eye, visible_threshold)
    if frame is None:
        out["others"][:] = True
        return out
    mid, nose_xy, d, up, lat, eyes = frame
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    pts = np.stack([xx, yy], -1)
    rel = pts - mid
    u = rel @ up / d
    v = rel @ lat / d
    dist = lambda c, r: np.linalg.norm(pts - c, axis=-1) < r * d  # noqa: E731
    nose_u = float((nose_xy - mid) @ up / d)
    below_face = u < nose_u - 0.35
    common = {
        "eye": np.any([dist(e[:2], 0.3) for e in eyes], axis=0),  # the eye and its orbital ring
        "nose": dist(nose_xy, 0.2),
        "mouth": dist(nose_xy - up * 0.25 * d, 0.18),
        "above_ear": (u >= 1.6) & (u < 2.2),
        "underbody": below_face,
        "stage": below_face & _dark(image, size, stage_max_grey),
    }
    if len(eyes) == 2:  # frontal: the ears stand to both sides of the forehead
        shapes = {
            "cheek": (u > nose_u - 0.3) & (u < 0.05) & (np.abs(v) < 0.8),
            "ear_base": (u >= 0.35) & (u < 0.8) & (np.abs(v) > 0.3) & (np.abs(v) < 1.1),
            "ear_top": (u >= 0.8) & (u < 1.6) & (np.abs(v) > 0.25) & (np.abs(v) < 1.3),
            "forehead": (u >= 0.2) & (u < 1.0) & (np.abs(v) <= 0.3),
            "head": (u >= -0.2) & (u < 1.6) & (np.abs(v) < 1.2),
        }
    else:  # profile
        shapes = {
            "cheek": (u > -0.6) & (u < 0.0) & (v > -0.8) & (v < 0.6),
            "ear_base": (u >= 0.3) & (u < 0.75) & (v > 0.2) & (v < 1.2),
            "ear_top": (u >= 0.75) & (u < 1.5) & (v > 0.1) & (v < 1.4),
            "forehead": (u >= 0.2) & (u < 1.0) & (v > -0.8) & (v <= 0.2),
            "head": (u >= -0.2) & (u < 1.5) & (v > -0.9) & (v < 1.6),
        }
    shapes.update(common)
    taken = np.zeros((size, size), bool)
    for name in AUTO_REGIONS:
        out[name] = shapes[name] & ~taken
        taken |= out[name]
    out["others"] = ~taken
    return out


def _dark(image, size: int, max_grey: float) -> np.ndarray:
    if image is None:
        return np.zeros((size, size), bool)
    img = np.asarray(image)
    img = img * 255.0 if np.issubdtype(img.dtype, np.floating) else img.astype(float)  # 0-1 floats or uint8
    grey = img.mean(axis=-1) if img.ndim == 3 else img
    if grey.shape != (size, size):
        grey = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)
    return grey < max_grey


def masks_from_annotation(path: str | Path, size: int) -> dict[str, dict[str, np.ndarray]]:
    """Manual regions: JSON ``{crop_id: [{"label": region, "points": [[x, y], ...]}, ...]}``
    (the shape labelme-style polygon tools export); polygons in crop pixels."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RegionError(f"{path}: unreadable region annotation ({exc})") from None
    out = {}
    for crop_id, shapes in doc.items():
        masks = {}
        for shape in shapes:
            label = shape.get("label")
            if label not in PAPER_REGIONS:
                raise RegionError(f"{path}: crop {crop_id}: unknown region '{label}' (use {', '.join(PAPER_REGIONS)})")
            m = masks.setdefault(label, np.zeros((size, size), np.uint8))
            cv2.fillPoly(m, [np.round(np.asarray(shape["points"], float)).astype(np.int32)], 1)
        out[crop_id] = {k: v.astype(bool) for k, v in masks.items()}
    return out


def crop_keypoints(index_rows: pd.DataFrame, crop_size: int) -> np.ndarray:
    """Keypoints of store rows in crop pixels: (n, 3 points, x/y/likelihood)."""
    scale = crop_size / index_rows["box_size"].to_numpy(float)
    out = np.zeros((len(index_rows), 3, 3))
    for j, p in enumerate(("nose", "right_eye", "left_eye")):
        out[:, j, 0] = (index_rows[f"{p}_x"].to_numpy() - index_rows["box_x0"].to_numpy()) * scale
        out[:, j, 1] = (index_rows[f"{p}_y"].to_numpy() - index_rows["box_y0"].to_numpy()) * scale
        out[:, j, 2] = index_rows[f"{p}_likelihood"].to_numpy()
    return out


def positive_regions(
    cam: np.ndarray, masks: dict[str, np.ndarray], threshold: float = 0.5, min_fraction: float | None = None
) -> dict[str, bool]:
    """Which regions are Grad-CAM positive.

    The paper's rule (Fig. 2C, default): a region is positive when a Grad-CAM-positive
    area (pixels at or above ``threshold``) touches it; an area spread over several
    regions makes every one of them positive. ``min_fraction`` (an option, not the
    paper's) demands that share of the region's own area instead.
    """
    hot = cam >= threshold
    if min_fraction is None:
        return {r: bool((hot & m).any()) for r, m in masks.items()}
    return {r: bool(m.any() and hot[m].mean() >= min_fraction) for r, m in masks.items()}


def per_image_regions(
    cams: np.ndarray,
    keypoints: np.ndarray,
    predicted_pain: np.ndarray,
    threshold: float = 0.5,
    min_fraction: float | None = None,
    visible_threshold: float = 0.5,
    manual: list[dict] | None = None,
    images: np.ndarray | None = None,
    stage_max_grey: float = STAGE_MAX_GREY,
) -> pd.DataFrame:
    """One row per image and region: positive (touch rule or area fraction), enrichment (the
    region's share of the map's mass over its share of the crop; NaN where the region is
    absent) and area."""
    size = cams.shape[-1]
    rows = []
    for i, cam in enumerate(cams):
        masks = region_masks_from_keypoints(
            size,
            *keypoints[i],
            visible_threshold=visible_threshold,
            image=None if images is None else images[i],
            stage_max_grey=stage_max_grey,
        )
        if manual is not None and manual[i]:
            masks.update(manual[i])
        pos = positive_regions(cam, masks, threshold, min_fraction)
        total = cam.sum() + 1e-8
        for r, m in masks.items():
            area = m.mean()
            rows.append(
                {
                    "image": i,
                    "region": r,
                    "positive": pos[r],
                    "pain": bool(predicted_pain[i]),
                    "enrichment": (cam[m].sum() / total) / area if area > 0 else np.nan,
                    "area": area,
                }
            )
    return pd.DataFrame(rows)


def contrast_table(per_image: pd.DataFrame, n_tests: int = len(PAPER_REGIONS)) -> pd.DataFrame:
    """Where the *pain-class* evidence differs between pain and no-pain images.

    ``per_image`` comes from :func:`per_image_regions` on Grad-CAM maps of the pain class
    for every image, whatever its prediction. A region that draws the map in every image
    (a silhouette edge, the crop's centre) draws it in both groups and cancels; a region
    whose look carries the pain signal draws it only where the signal is. Per region: mean
    enrichment in images predicted pain and predicted no pain, the difference, Welch's
    t-test and Bonferroni over ``n_tests`` (the paper's 13 regions). Sorted by difference.
    """
    from scipy import stats

    rows = []
    for region, g in per_image.dropna(subset=["enrichment"]).groupby("region"):
        a = g.loc[g["pain"], "enrichment"].to_numpy(float)
        b = g.loc[~g["pain"], "enrichment"].to_numpy(float)
        p = stats.ttest_ind(a, b, equal_var=False).pvalue if len(a) > 1 and len(b) > 1 else np.nan
        rows.append(
            {
                "region": region,
                "enrichment_pain_images": a.mean() if len(a) else np.nan,
                "enrichment_no_pain_images": b.mean() if len(b) else np.nan,
                "n_pain": len(a),
                "n_no_pain": len(b),
                "p": p,
            }
        )
    out = pd.DataFrame(rows).set_index("region")
    out["difference"] = out["enrichment_pain_images"] - out["enrichment_no_pain_images"]
    out["p_bonferroni"] = np.minimum(out["p"] * n_tests, 1.0)
    return out.sort_values("difference", ascending=False)


def attribution_table(
    cams: np.ndarray,
    keypoints: np.ndarray,
    predicted_pain: np.ndarray,
    threshold: float = 0.5,
    min_fraction: float | None = None,
    visible_threshold: float = 0.5,
    manual: list[dict] | None = None,
    images: np.ndarray | None = None,
    stage_max_grey: float = STAGE_MAX_GREY,
) -> pd.DataFrame:
    """Per region: positive frequency among pain and no-pain predictions, and enrichment.

    Enrichment = the region's share of Grad-CAM mass divided by its share of the crop's
    area, averaged over the pain-predicted images: > 1 means the network looks there
    more than chance. Regions are ranked by it.
    """
    df = per_image_regions(
        cams, keypoints, predicted_pain, threshold, min_fraction, visible_threshold, manual, images, stage_max_grey
    )
    freq = df.pivot_table(index="region", columns="pain", values="positive", aggfunc="sum").fillna(0)
    freq = freq.rename(columns={True: "pain", False: "no_pain"})
    for c in ("pain", "no_pain"):
        if c not in freq:
            freq[c] = 0
    n = df.drop_duplicates("image")["pain"].value_counts()
    out = pd.DataFrame(
        {
            "positive_pain": freq["pain"].astype(int),
            "positive_no_pain": freq["no_pain"].astype(int),
            "n_pain": int(n.get(True, 0)),
            "n_no_pain": int(n.get(False, 0)),
        }
    )
    out["freq_pain"] = out["positive_pain"] / max(out["n_pain"].iloc[0], 1)
    out["freq_no_pain"] = out["positive_no_pain"] / max(out["n_no_pain"].iloc[0], 1)
    out["enrichment_pain"] = df[df.pain].groupby("region")["enrichment"].mean()
    out["mean_area"] = df.groupby("region")["area"].mean()
    return out.sort_values("enrichment_pain", ascending=False)


def draw_regions(image_bgr: np.ndarray, masks: dict[str, np.ndarray], alpha: float = 0.45) -> np.ndarray:
    """The regions over the crop, so a person can check them."""
    over = image_bgr.copy()
    for name, m in masks.items():
        if name != "others":
            over[m] = COLOURS.get(name, (255, 255, 255))[::-1]
    return cv2.addWeighted(image_bgr, 1 - alpha, over, alpha, 0)
