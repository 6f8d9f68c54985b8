"""Create the registry's topics on the broker named by KAFKA_BOOTSTRAP_SERVERS."""

from __future__ import annotations

import asyncio
import sys

from shared.errors import ReelforgeError
from shared.kafka_admin import ensure_topics
from shared.settings import InfraSettings


def main() -> int:
    settings = InfraSettings()
    try:
        created = asyncio.run(ensure_topics(settings.kafka_bootstrap_servers))
    except ReelforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"topics ready on {settings.kafka_bootstrap_servers} ({len(created)} created)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
