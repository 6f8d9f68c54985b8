import sys

from services.reconciler.app import create_app
from services.reconciler.settings import ReconcilerSettings
from shared.runtime import run_main

if __name__ == "__main__":
    sys.exit(run_main(ReconcilerSettings(), create_app))
