"""`python -m mcsync.cli`: the same as the `mcsync` command."""

import sys

from mcsync.cli import main

sys.exit(main())
