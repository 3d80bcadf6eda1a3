"""``python -m jupyter_scriptrun.bench``."""

import sys

from jupyter_scriptrun.bench.harness import main

sys.exit(main())
