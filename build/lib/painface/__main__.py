"""``python -m painface``: the painface command."""

import sys

from painface.cli import main

sys.exit(main())
