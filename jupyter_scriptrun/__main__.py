"""``python -m jupyter_scriptrun``: the scriptrun command."""

import sys

from .cli import main

sys.exit(main())
