import sys

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from shared.runtime import run_main

if __name__ == "__main__":
    sys.exit(run_main(IntakeSettings(), create_app))
