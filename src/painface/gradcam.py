"""Grad-CAM (paper step 8): maps on a chosen conv block, min-max normalised, and overlays.

The methods come from pytorch-grad-cam; this module picks the layer and the target class.
"""

from __future__ import annotations

import numpy as np
import torch

from painface.errors import PainfaceError


class GradCamError(PainfaceError):
    pass


def target_layer(net: torch.nn.Module, block: int | None = None) -> torch.nn.Module:
    """The Grad-CAM target: the last conv layer (the paper's, ``block=None``) or conv block
    ``block`` (1-based; negative counts from the end), whose map is finer."""
    if block is None:
        layer = getattr(net, "target_layer", None)
        if layer is None:
            raise GradCamError(f"{type(net).__name__} has no conv target layer for Grad-CAM")
        return layer
    blocks = list(getattr(net, "blocks", []))
    if not blocks or block == 0 or abs(block) > len(blocks):
        raise GradCamError(f"gradcam layer {block}: {type(net).__name__} has conv blocks 1..{len(blocks)}")
    return blocks[block - 1] if block > 0 else blocks[block]


#: The region analysis's map: the deepest conv block at least this many pixels wide. At a
#: 128-px input that is block 4 (16x16); the last conv layer's 4x4 map cannot tell 13
#: regions apart (benchmarks/planted_regions.py, README "Reproducing the paper").
REGION_MAP_PX = 16


def block_widths(net: torch.nn.Module, input_size: int) -> list[int]:
    """Width in pixels of each conv block's map for a square ``input_size`` input."""
    widths: list[int] = []
    hooks = [b.register_forward_hook(lambda m, i, o: widths.append(int(o.shape[-1]))) for b in net.blocks]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net.forward_features(torch.zeros(1, 3, input_size, input_size, device=next(net.parameters()).device))
    finally:
        net.train(was_training)
        for h in hooks:
            h.remove()
    return widths


def region_block(net: torch.nn.Module, input_size: int, min_px: int = REGION_MAP_PX) -> int | None:
    """The Grad-CAM block for region analysis (``--layer auto``): the last conv layer (the
    paper's, None) when its map is at least ``min_px`` wide, else the deepest block that is."""
    widths = block_widths(net, input_size)
    if widths[-1] >= min_px:
        return None
    fine = [k for k, w in enumerate(widths, start=1) if w >= min_px]
    return fine[-1] if fine else 1


def gradcam_maps(
    net: torch.nn.Module,
    images: torch.Tensor,
    targets: list[int] | None = None,
    method: str = "gradcam",
    block: int | None = None,
) -> np.ndarray:
    """Grad-CAM (or Grad-CAM++) on the net's last conv layer (or conv block ``block``),
    min-max normalised per image (paper step 8). Returns (n, H, W) maps in [0, 1]."""
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus}.get(method)
    if cls is None:
        raise GradCamError(f"gradcam method '{method}' unknown (use gradcam or gradcam++)")
    layer = target_layer(net, block)
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            x = images.clone().requires_grad_(True)
            with cls(model=net, target_layers=[layer]) as cam:  # context manager releases the hooks
                tg = [ClassifierOutputTarget(int(t)) for t in targets] if targets is not None else None
                maps = cam(input_tensor=x, targets=tg)
    finally:
        net.train(was_training)
    maps = np.nan_to_num(maps.astype(np.float32))
    lo = maps.reshape(len(maps), -1).min(1)[:, None, None]
    hi = maps.reshape(len(maps), -1).max(1)[:, None, None]
    return (maps - lo) / np.maximum(hi - lo, 1e-8)


def overlay(image_rgb01: np.ndarray, cam: np.ndarray) -> np.ndarray:
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(image_rgb01.astype(np.float32), cam, use_rgb=True)


def tensor_to_rgb01(t: torch.Tensor) -> np.ndarray:
    from painface.data import MEAN, STD

    return np.clip(t.detach().cpu().numpy().transpose(1, 2, 0) * STD + MEAN, 0, 1)
