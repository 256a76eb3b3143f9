"""The defaults every stage shares, written once (the CLI, the configs and the methods text
read them from here)."""

LIKELIHOOD_THRESHOLD = 0.9  # paper step 3: a keypoint counts when DeepLabCut's likelihood >= 0.9
CROP_PX = 800  # paper step 3: an 800x800 crop ...
REFERENCE_ROWS = 2160  # ... of a 3840x2160 frame
CROP_SIZE = 128  # the resolution a crop is stored at (beyond the paper: the CNN reads 96 px)
PAIN_CUTOFF = 0.5  # paper step 6: the larger class wins, so pain when p(pain) > 0.5 (a tie is no pain)
