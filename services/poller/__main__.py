import sys

from services.poller.app import create_app
from services.poller.settings import PollerSettings
from shared.runtime import run_main

if __name__ == "__main__":
    sys.exit(run_main(PollerSettings(), create_app))
