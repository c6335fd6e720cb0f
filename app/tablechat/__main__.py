"""``python -m tablechat``."""

import sys

from .cli import main

sys.exit(main())
