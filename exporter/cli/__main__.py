"""`python -m exporter.cli`: the same entry point as the `wolkvox-exporter` script."""

import sys

from exporter.cli.main import main

sys.exit(main())
