"""Entry point: ``python -m deploy.localinfra <command>``."""

import sys

from deploy.localinfra.cli import main

sys.exit(main(sys.argv[1:]))
