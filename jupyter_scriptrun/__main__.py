"""``python -m jupyter_scriptrun``: the scriptrun command."""

import sys

from jupyter_scriptrun.cli import main

sys.exit(main())
