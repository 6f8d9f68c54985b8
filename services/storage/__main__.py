"""`python -m services.storage`: consume tasks-succeeded, re-host, complete jobs."""

import sys

from services.storage.app import create_app
from services.storage.settings import StorageSettings
from shared.runtime import run_main

if __name__ == "__main__":
    sys.exit(run_main(StorageSettings(), create_app))
