"""Run the QC service: `python -m services.qc` (review page on http://127.0.0.1:$QC_HTTP_PORT/review)."""

from __future__ import annotations

import sys

from services.qc.app import create_app
from services.qc.settings import QcSettings
from shared.runtime import run_main


def main() -> int:
    return run_main(QcSettings(), create_app)


if __name__ == "__main__":
    sys.exit(main())
