"""Run the provider emulator: `python -m services.emulator` (127.0.0.1:$EMULATOR_PORT, 8090)."""

from __future__ import annotations

import logging

import uvicorn

from services.emulator.app import create_app
from services.emulator.settings import EmulatorSettings


def main() -> None:
    settings = EmulatorSettings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
