"""The plotting helpers every figure shares: a headless pyplot, one palette, atomic saves."""

from __future__ import annotations

from pathlib import Path

from painface.files import atomic_write

# colour-blind-safe (Okabe-Ito), grey first for the control group
PALETTE = ["#4d4d4d", "#e69f00", "#d55e00", "#0072b2", "#009e73", "#cc79a7", "#56b4e9"]


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display on a cluster node), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 130) -> Path:
    """Write ``fig`` to ``path`` whole or not at all, and close it."""
    path = Path(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    pyplot().close(fig)
    return path
