"""Render one camera frame of a synthetic mouse on the paper's small black stage.

The head is a small 3-D model (ellipsoid skull, snout, eyes, ears, cheeks, whisker
pads, forehead) rotated by yaw/pitch/roll and projected orthographically. Every
facial feature is a 3-D disc or line, so foreshortening, profiles and facing away
come from the geometry rather than from special cases.

Each drawn primitive is tagged with the action unit (AU) it belongs to. The same
primitives drawn into masks give the ground-truth region of every AU, so "which
pixels can this AU change" is exact by construction.

Head frame: x to image right when the mouse faces the camera (yaw 0), y down,
z toward the camera. The mouse's *left* eye is at +x (it appears on image right).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from painface.regions import ACTION_UNITS as FACE_VOCABULARY

#: The mouse grimace scale's action units plus the head/forehead change the paper reports.
ACTION_UNITS = tuple(FACE_VOCABULARY)  # one table for the face: regions.ACTION_UNITS
KEYPOINTS = ("nose", "right_eye", "left_eye")
#: Calibrated so that at signal 1.0 a linear model on 32x32 grey pixels stays near chance
#: level while the paper's CNN learns the task (benchmarks/difficulty.py, README).
AMPLITUDE = 0.42

_SHIFT = 4  # cv2 sub-pixel drawing: coordinates carry 4 fractional bits
_SCALE = 1 << _SHIFT
_CIRCLE = np.stack(
    [np.cos(np.linspace(0, 2 * np.pi, 20, endpoint=False)), np.sin(np.linspace(0, 2 * np.pi, 20, endpoint=False))],
    axis=1,
)


@dataclass(frozen=True)
class Mouse:
    """One individual: geometry and appearance that stay fixed across its recordings."""

    mouse_id: str
    sex: str = "male"
    strain: str = "BALB/c"
    coat_bgr: tuple[float, float, float] = (238.0, 240.0, 242.0)
    head_size: float = 1.0  # overall scale of the head
    eye_spacing: float = 1.0  # lateral eye position factor
    snout_length: float = 1.0
    ear_size: float = 1.0
    eye_openness: float = 1.0  # baseline palpebral opening, varies between animals
    eye_size: float = 1.0
    whisker_length: float = 1.0
    texture_seed: int = 0


@dataclass
class Pose:
    """Head orientation (degrees) relative to one camera, and its image placement."""

    yaw: float = 0.0  # 0: facing the camera; +-90: profile; 180: facing away
    pitch: float = 0.0  # + lifts the snout
    roll: float = 0.0
    cx: float = 320.0  # image position of the head centre (pixels)
    cy: float = 180.0
    scale: float = 30.0  # pixels per head unit (head half-width ~ 1 unit)
    occluded: bool = False  # paws in front of the face, as in grooming
    # natural, pain-unrelated variation: free mice move their ears and blink
    ear_back: float = 0.0  # degrees the ears are turned back
    eye_open: float = 1.0  # factor on the palpebral opening


@dataclass
class Appearance:
    """Per-frame imaging conditions."""

    light: float = 1.0  # global gain
    blur: int = 0  # horizontal motion-blur kernel length in pixels (0 = none)


@dataclass
class Expression:
    """Pain intensity in [0, 1] and the weight of each action unit."""

    intensity: float = 0.0
    weights: dict[str, float] = field(default_factory=lambda: {au: 1.0 for au in ACTION_UNITS})
    signal: float = 1.0  # global scale of the planted effect (tests use a stronger one)

    def amount(self, au: str) -> float:
        return float(np.clip(self.intensity * self.weights.get(au, 0.0) * self.signal * AMPLITUDE, 0.0, 1.5))


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = np.deg2rad([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / math.sqrt(v @ v)  # np.linalg.norm's own formula, without its per-call overhead


def _cross(a, b) -> np.ndarray:
    """np.cross for two 3-vectors, with the same arithmetic: np.cross's array machinery
    took a quarter of the render time, for 3 numbers."""
    a0, a1, a2 = (float(x) for x in a)
    b0, b1, b2 = (float(x) for x in b)
    return np.array([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0])


def _shade(color, factor) -> tuple[float, float, float]:
    return tuple(min(max(float(c * factor), 0.0), 255.0) for c in color)


def _mix(a, b, t) -> tuple[float, float, float]:
    return tuple(float(x * (1 - t) + y * t) for x, y in zip(a, b))


class _Scene:
    """Collects projected primitives, each tagged with an AU (or None)."""

    def __init__(self, pose: Pose):
        self.R = rotation(pose.yaw, pose.pitch, pose.roll)
        self.pose = pose
        self.items: list[tuple] = []  # (kind, points_fixed, color, thickness, tag)

    def project(self, pts) -> np.ndarray:
        pts = np.atleast_2d(np.asarray(pts, dtype=float)) @ self.R.T
        xy = pts[:, :2] * self.pose.scale + (self.pose.cx, self.pose.cy)
        return xy

    def depth(self, pts) -> np.ndarray:
        return (np.atleast_2d(np.asarray(pts, dtype=float)) @ self.R.T)[:, 2]

    def facing(self, normal) -> float:
        """z of the rotated normal: > 0 when a surface looks toward the camera."""
        return float((self.R @ _unit(normal))[2])

    def disc(self, center, normal, a, b, color, tag=None, up=(0, -1, 0)):
        """A 3-D ellipse on a surface; drawn as a polygon so foreshortening is exact."""
        n = _unit(normal)
        u = _cross(up, n)
        if math.sqrt(u @ u) < 1e-6:
            u = np.array([1.0, 0, 0])
        u = _unit(u)
        v = _cross(n, u)
        pts = np.asarray(center) + a * _CIRCLE[:, :1] * u + b * _CIRCLE[:, 1:] * v
        self.poly(pts, color, tag)

    def poly(self, pts3, color, tag=None, hull=False):
        xy = self.project(pts3)
        if hull:
            xy = cv2.convexHull(xy.astype(np.float32)).reshape(-1, 2)
        self.items.append(("poly", np.round(xy * _SCALE).astype(np.int32), color, 0, tag))

    def line(self, p0, p1, color, thickness, tag=None):
        xy = self.project([p0, p1])
        self.items.append(("line", np.round(xy * _SCALE).astype(np.int32), color, thickness, tag))

    def draw(self, img: np.ndarray) -> None:
        for kind, pts, color, thick, _ in self.items:
            if kind != "mask":  # mask-only shapes mark a region, they are not drawn
                _draw(img, kind, pts, color, thick)

    def masks(self, shape) -> dict[str, np.ndarray]:
        out = {}
        for kind, pts, _, thick, tag in self.items:
            if tag is None:
                continue
            m = out.setdefault(tag, np.zeros(shape[:2], np.uint8))
            _draw(m, kind, pts, 255, thick + 2)
        return out


def _draw(img, kind, pts, color, thick):
    if kind in ("poly", "mask"):
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA, _SHIFT)
    else:
        cv2.line(img, tuple(pts[0]), tuple(pts[1]), color, max(1, int(thick)), cv2.LINE_AA, _SHIFT)


# Skull and snout sample points (unit sphere samples, scaled per mouse), computed once.
_SPHERE = np.array(
    [
        [np.cos(t) * np.sin(p), np.cos(p), np.sin(t) * np.sin(p)]
        for p in np.linspace(0.15, np.pi - 0.15, 7)
        for t in np.linspace(0, 2 * np.pi, 14, endpoint=False)
    ]
)


def _build_scene(mouse: Mouse, pose: Pose, expr: Expression, neutral_ref: bool = False) -> tuple[_Scene, dict]:
    """Lay out every primitive for one frame; returns the scene and keypoint info."""
    s = _Scene(pose)
    coat = mouse.coat_bgr
    dark_coat = np.mean(coat) < 100
    k = mouse.head_size
    es, sl = mouse.eye_spacing, mouse.snout_length
    a = {au: (0.0 if neutral_ref else expr.amount(au)) for au in ACTION_UNITS}

    # --- body (behind the head): an ellipsoid trailing away from the snout
    body = _SPHERE * (1.25 * k, 1.05 * k, 2.3 * k) + (0, 0.45 * k, -2.6 * k)
    body_depth = s.depth([(0, 0.45 * k, -2.6 * k)])[0]
    body_item = ("body", body)

    # --- forehead: the paper's new finding, the forehead flattens and the head-forehead
    # angle changes; the crown point of the silhouette drops and moves back.
    crown = (0, (-0.95 + 0.32 * a["forehead"]) * k, (0.35 - 0.25 * a["forehead"]) * k)
    skull = _SPHERE * (0.85 * k, 0.72 * k, 1.0 * k)
    snout_tip = np.array([0, 0.32 * k, 1.75 * sl * k])
    snout = np.array(
        [
            snout_tip,
            (0.28 * k, 0.25 * k, 1.25 * sl * k),
            (-0.28 * k, 0.25 * k, 1.25 * sl * k),
            (0.2 * k, 0.05 * k, 1.45 * sl * k),
            (-0.2 * k, 0.05 * k, 1.45 * sl * k),
            (0, 0.45 * k, 1.35 * sl * k),
        ]
    )
    head_pts = np.vstack([skull, snout, crown])

    # Ears: discs hinged at their base. Pain rotates them back (about x) and flattens them.
    ears = []
    for side in (-1, 1):
        base = np.array([0.55 * side * k, -0.62 * k, -0.05 * k])
        back = np.deg2rad(32 * a["ear"] + pose.ear_back)
        out = np.deg2rad(28)
        # neutral ear axis points up and out; pain tilts it backwards
        axis = _unit([side * np.sin(out), -np.cos(out) * np.cos(back), -np.sin(back)])
        normal = _unit([side * 0.25, -0.15, 1.0 - 0.6 * a["ear"]])
        length = 0.62 * mouse.ear_size * k
        width = 0.5 * mouse.ear_size * k * (1 - 0.25 * min(a["ear"], 1))
        centre = base + axis * length * 0.85
        ears.append((centre, normal, width, length, s.depth([centre])[0]))

    # --- draw order: far ears / body, head, near ears, then surface features
    head_depth = 0.0
    for centre, normal, w, length, d in ears:
        if d < head_depth:
            _ear(s, centre, normal, w, length, coat, dark_coat)
    if body_depth < head_depth:
        s.poly(body_item[1], _shade(coat, 0.93), None, hull=True)
    s.poly(head_pts, coat, None, hull=True)
    # the forehead mask covers the part of the silhouette the crown point can change:
    # the crown in both states and its neighbours on both outlines
    if not neutral_ref:
        crown0 = np.array([0, -0.95 * k, 0.35 * k])
        near = [crown, crown0]
        for pts in (head_pts, np.vstack([skull, snout, crown0])):
            xy = s.project(pts).astype(np.float32)
            hull = cv2.convexHull(xy, returnPoints=False).ravel()
            at = np.flatnonzero(hull == len(pts) - 1)
            if len(at):
                i = at[0]
                near += [pts[hull[(i - 1) % len(hull)]], pts[hull[(i + 1) % len(hull)]]]
        s.items.append(("mask", _region_poly(s, near, 0.06 * k), 0, 0, "forehead_mask"))
    if body_depth >= head_depth:
        s.poly(body_item[1], _shade(coat, 0.93), None, hull=True)
    for centre, normal, w, length, d in ears:
        if d >= head_depth:
            _ear(s, centre, normal, w, length, coat, dark_coat)

    shade_dir = 0.82 if not dark_coat else 1.35

    # forehead dome highlight: shrinks and flattens with the forehead AU
    fh_n = (0, -0.8, 0.6)
    if s.facing(fh_n) > 0.05:
        r = 0.42 * k * (1 - 0.45 * min(a["forehead"], 1))
        s.disc((0, -0.68 * k, 0.45 * k), fh_n, r, r * 0.6, _shade(coat, 1.06 if not dark_coat else 0.8), "forehead")
        # the head-forehead crease deepens as the angle changes
        if a["forehead"] > 0.02:
            s.line(
                (-0.25 * k, -0.45 * k, 0.75 * k),
                (0.25 * k, -0.45 * k, 0.75 * k),
                _mix(coat, _shade(coat, shade_dir), min(a["forehead"], 1)),
                1.2 * pose.scale / 30,
                "forehead",
            )

    # cheeks / whisker pads: the cheek bulge grows and casts a rim shadow
    pads = {}
    for side in (-1, 1):
        c = np.array([0.38 * side * k, 0.28 * k, 1.15 * sl * k])
        n = _unit([side * 0.8, 0.3, 0.6])
        pads[side] = c
        if s.facing(n) > 0.0:
            r = 0.3 * k * (1 + 0.5 * min(a["cheek"], 1))
            s.disc(
                c, n, r * 1.08, r * 0.8, _mix(coat, _shade(coat, shade_dir), 0.35 + 0.45 * min(a["cheek"], 1)), "cheek"
            )
            s.disc(c + n * 0.02, n, r * 0.85, r * 0.6, _shade(coat, 1.03 if not dark_coat else 0.9), "cheek")

    # nose bridge bulge, then the nose itself (it swells with the nose AU)
    bridge_n = (0, -0.6, 0.8)
    if s.facing(bridge_n) > 0.0 and a["nose"] > 0.02:
        r = 0.28 * k * min(a["nose"], 1.2)
        s.disc((0, 0.0, 1.25 * sl * k), bridge_n, r * 0.7, r, _mix(coat, _shade(coat, shade_dir), 0.6), "nose")
    nose_n = (0, 0.15, 1)
    nose_visible = s.facing(_unit([0, 0.1, 1.0])) > -0.35
    if nose_visible:
        nr = 0.15 * k * (1 + 0.45 * min(a["nose"], 1.2))
        nose_col = (165, 150, 215) if not dark_coat else (95, 90, 120)
        s.disc(snout_tip + (0, 0, 0.02), nose_n, nr, nr * 0.8, nose_col, "nose")
        # mouth: a short dark line under the nose
        s.line(
            snout_tip + (0, 0.16 * k, -0.08 * k), snout_tip + (0, 0.26 * k, -0.25 * k), _shade(coat, 0.55), 1.0, None
        )

    # eyes: the orbital tightening AU narrows the palpebral opening
    eye_info = {}
    for name, side in (("right_eye", -1), ("left_eye", 1)):
        c = np.array([0.5 * side * es * k, -0.12 * k, 0.62 * k])
        n = _unit([side * 0.78, -0.12, 0.62])
        vis = s.facing(n)
        eye_info[name] = (c, vis)
        if vis > 0.02:
            w = 0.2 * mouse.eye_size * k
            h = w * 0.85 * mouse.eye_openness * pose.eye_open * (1 - 0.5 * min(a["orbital"], 1.2))
            # orbital fur ring, then the eye, then a catch-light
            ring = _shade(coat, 0.9 if not dark_coat else 1.25)
            s.disc(c, n, w * 1.45, max(h * 1.45, w * 0.55), ring, "orbital")
            s.disc(c + n * 0.01, n, w, max(h, 0.02 * k), (18, 14, 22), "orbital")
            if h > 0.06 * k:
                s.disc(
                    c + n * 0.03 + (0.03 * side * k, -0.04 * k, 0), n, w * 0.22, w * 0.22, (200, 200, 205), "orbital"
                )
            if a["orbital"] > 0.05:  # the squint crease
                s.line(
                    c + (-0.17 * k, -h - 0.05 * k, 0.02),
                    c + (0.17 * k, -h - 0.05 * k, 0.02),
                    _mix(coat, _shade(coat, shade_dir * 0.8), min(a["orbital"], 1)),
                    1.0,
                    "orbital",
                )

    # whiskers: pulled back and clumped with the whisker AU
    wcol = (230, 232, 235) if dark_coat else (175, 175, 180)
    for side in (-1, 1):
        c = pads[side]
        if s.facing(_unit([side * 0.8, 0.3, 0.6])) < -0.1 or not nose_visible:
            continue
        base_angle = np.deg2rad(20 - 40 * min(a["whisker"], 1.2))
        spread = np.deg2rad(16 * (1 - 0.65 * min(a["whisker"], 1.2)))
        for j in range(-2, 3):
            ang = base_angle + j * spread
            d = _unit([side * np.cos(ang), 0.08 * j, np.sin(ang)])
            s.line(c, c + d * 1.2 * mouse.whisker_length * k, wcol, 0.8 * max(pose.scale / 30, 0.6), "whisker")

    if pose.occluded:  # grooming: both forepaws in front of the face
        paw = (175, 170, 215) if not dark_coat else (90, 85, 110)
        for side in (-1, 1):
            s.disc((0.3 * side * k, 0.1 * k, 1.6 * k), (0, 0, 1), 0.42 * k, 0.55 * k, _shade(coat, 0.97), "hand")
            s.disc((0.3 * side * k, -0.25 * k, 1.65 * k), (0, 0, 1), 0.16 * k, 0.13 * k, paw, "hand")

    keypoints = {"nose": (snout_tip, s.facing(_unit([0, 0.1, 1.0])) + 0.35)}
    keypoints.update(eye_info)
    return s, keypoints


def _region_poly(s: _Scene, pts3, pad) -> np.ndarray:
    xy = s.project(pts3)
    hull = cv2.convexHull(xy.astype(np.float32)).reshape(-1, 2)
    centre = hull.mean(axis=0)
    grow = hull + (hull - centre) / (np.linalg.norm(hull - centre, axis=1, keepdims=True) + 1e-6) * pad * s.pose.scale
    return np.round(grow * _SCALE).astype(np.int32)


def _ear(s: _Scene, centre, normal, width, length, coat, dark_coat):
    inner = (170, 165, 220) if not dark_coat else (80, 75, 95)
    s.disc(centre, normal, width, length * 0.75, _shade(coat, 0.97), "ear", up=(0, -1, -0.3))
    if s.facing(normal) > 0.05:
        s.disc(
            np.asarray(centre) + _unit(normal) * 0.02,
            normal,
            width * 0.62,
            length * 0.5,
            inner,
            "ear",
            up=(0, -1, -0.3),
        )


def render_face(img: np.ndarray, mouse: Mouse, pose: Pose, expr: Expression) -> dict:
    """Draw the mouse into ``img`` (BGR uint8, modified in place).

    Returns keypoints: ``{name: (x, y, visibility)}`` with visibility in [-1, 1]
    (the facing of the feature's surface; <= 0 means hidden).
    """
    scene, kps = _build_scene(mouse, pose, expr)
    scene.draw(img)
    out = {}
    for name, (pt, vis) in kps.items():
        x, y = scene.project(pt)[0]
        if pose.occluded:
            vis = min(vis, -0.5)
        out[name] = (float(x), float(y), float(vis))
    return out


def region_masks(shape, mouse: Mouse, pose: Pose, expr: Expression) -> dict[str, np.ndarray]:
    """Ground-truth pixel masks of every AU, covering both its neutral and its current state."""
    masks: dict[str, np.ndarray] = {}
    for neutral in (False, True):
        scene, _ = _build_scene(mouse, pose, expr, neutral_ref=neutral)
        for tag, m in scene.masks(shape).items():
            tag = "forehead" if tag == "forehead_mask" else tag
            masks[tag] = m if tag not in masks else np.maximum(masks[tag], m)
    return masks
