import sys

from services.dispatcher.app import create_app
from services.dispatcher.settings import DispatcherSettings
from shared.runtime import run_main

if __name__ == "__main__":
    sys.exit(run_main(DispatcherSettings(), create_app))
