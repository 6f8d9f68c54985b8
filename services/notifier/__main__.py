"""`python -m services.notifier`: consume jobs-finished, deliver signed webhooks."""

import sys

from services.notifier.app import create_app
from services.notifier.settings import NotifierSettings
from shared.runtime import run_main

if __name__ == "__main__":
    sys.exit(run_main(NotifierSettings(), create_app))
