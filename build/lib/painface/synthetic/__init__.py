"""Synthetic free-moving mice with a planted, graded pain expression (the ground truth).

- ``render``: one camera frame of a mouse face/body, with the action units and their masks;
- ``recording``: sessions filmed by one or two cameras, with DeepLabCut-format keypoints;
- ``study``: whole studies from ``experiments/*.yaml``.
"""

from painface.synthetic.render import ACTION_UNITS, Expression, Mouse, Pose, region_masks, render_face

__all__ = ["ACTION_UNITS", "Expression", "Mouse", "Pose", "region_masks", "render_face"]
