"""The exceptions that mean "bad input", reported as one line instead of a traceback."""

from painface.callbacks import CallbackError
from painface.config import ConfigError
from painface.data import DataError
from painface.keypoints import KeypointError
from painface.manifest import ManifestError
from painface.models import ModelError
from painface.store import StoreError

USER_ERRORS = (ConfigError, DataError, KeypointError, ManifestError, ModelError, StoreError, CallbackError,
               FileNotFoundError)
