"""painface: automated pain assessment from the faces of free-moving mice.

Implements and extends Kobayashi et al., "Automated pain assessment based on facial
expression of free-moving mice", PNAS Nexus 2025 (pgaf352). Heavy dependencies
(torch, DeepLabCut) are imported by the submodules that need them, so that
``import painface`` stays fast.
"""

__version__ = "0.2.0"
