"""Thin wiring: the `candidates-stored` subscriber and the sweep loop, both onto `QcPipeline`."""

from __future__ import annotations

import asyncio
import logging

from faststream import AckPolicy
from faststream.kafka import KafkaBroker

from services.qc.pipeline import QcPipeline
from shared.events import CandidateStored
from shared.messaging import consume, decoder_for
from shared.metrics import ServiceMetrics
from shared.runtime import BackgroundLoop
from shared.topics import Topic

log = logging.getLogger(__name__)
GROUP = "qc"


def register(broker: KafkaBroker, pipeline: QcPipeline, metrics: ServiceMetrics) -> None:
    async def on_candidate_stored(event: CandidateStored) -> None:
        await pipeline.on_candidate_stored(event)

    consume(
        broker,
        Topic.CANDIDATES_STORED,
        group_id=GROUP,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decode=decoder_for(CandidateStored),
        handle=on_candidate_stored,
        on_dead_letter=metrics.dead_letter,
    )


def sweep_loop(
    pipeline: QcPipeline, interval_s: float, stale_s: float, batch: int
) -> BackgroundLoop:
    """Every `interval_s`, finish at most `batch` settled jobs that no event will finish."""

    async def qc_sweep() -> None:
        while True:
            try:
                finished = await pipeline.sweep_once(stale_s, batch)
                if finished:
                    log.info("sweep finished %d job(s)", finished)
            except Exception:  # a server blip: log and try again next round
                log.exception("QC sweep failed; retrying in %.0f s", interval_s)
            await asyncio.sleep(interval_s)

    return qc_sweep
