"""The `gemini` provider: one API key, two video surfaces on the Gemini Developer API.

* `veo-*` models: `:predictLongRunning` operations (`VeoProvider`, shared/providers/veo.py).
* `gemini-omni-*` models: the Interactions API (`InteractionsVideo`,
  shared/providers/gemini_interactions.py); they refuse predictLongRunning and generateContent.

`GeminiProvider` picks the surface from the model at submit and records it in the `TaskRef`
(`extra["surface"]`), so a ref written before a restart is resumed on the same surface.
Webhooks of both surfaces come from the same project webhook and the same signing secret;
the event type says which surface it concerns.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping

import httpx

from shared.providers.base import (
    GenerationRequest,
    ProviderCapabilities,
    TaskRef,
    TaskStatus,
    VideoOutput,
    VideoProvider,
    WebhookHint,
)
from shared.providers.gemini_interactions import (
    SURFACE,
    Delivery,
    InteractionsVideo,
    interaction_hint,
    is_interactions_model,
)
from shared.providers.http import Clock, verified_event
from shared.providers.veo import VeoProvider


class GeminiProvider:
    name = "gemini"
    # cancel/delete hold for Interactions tasks; for a Veo task they answer False.
    capabilities = ProviderCapabilities(
        cancel=True, delete=True, webhooks=True, per_request_callback=True
    )

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_key: str,
        base_url: str,
        webhook_secret: str | None = None,
        delivery: Delivery = "inline",
        clock: Clock = time.time,
    ) -> None:
        self.veo = VeoProvider(
            client, api_key=api_key, base_url=base_url, webhook_secret=webhook_secret, clock=clock
        )
        self.interactions = InteractionsVideo(
            client,
            api_key=api_key,
            base_url=base_url,
            webhook_secret=webhook_secret,
            delivery=delivery,
            clock=clock,
        )
        self._webhook_secret = webhook_secret
        self._clock = clock

    def _surface(self, ref: TaskRef) -> VideoProvider:
        if ref.extra.get("surface") == SURFACE or is_interactions_model(ref.model):
            return self.interactions
        return self.veo

    async def submit(self, request: GenerationRequest, model: str) -> TaskRef:
        surface = self.interactions if is_interactions_model(model) else self.veo
        return await surface.submit(request, model)

    async def status(self, ref: TaskRef) -> TaskStatus:
        return await self._surface(ref).status(ref)

    async def download(self, ref: TaskRef, output: VideoOutput) -> AsyncIterator[bytes]:
        async for chunk in self._surface(ref).download(ref, output):
            yield chunk

    async def find_created(self, request: GenerationRequest, model: str) -> TaskRef | None:
        surface = self.interactions if is_interactions_model(model) else self.veo
        return await surface.find_created(request, model)

    async def cancel(self, ref: TaskRef) -> bool:
        return await self._surface(ref).cancel(ref)

    async def delete(self, ref: TaskRef) -> bool:
        return await self._surface(ref).delete(ref)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookHint:
        event = verified_event(self.name, self._webhook_secret, headers, body, self._clock)
        if str(event.get("type", "")).startswith("interaction."):
            return interaction_hint(event)
        return self.veo.parse_webhook(headers, body)
