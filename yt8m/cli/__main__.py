"""`python -m yt8m.cli`: the `yt8m` command."""

import sys

from yt8m.cli import main

sys.exit(main())
