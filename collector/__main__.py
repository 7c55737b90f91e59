"""``python -m collector`` is ``cycletime``."""

import sys

from collector.cli import main

sys.exit(main())
