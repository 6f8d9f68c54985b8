"""The egress guard: SSRF vectors refused at intake (422 / DLQ reason) and at send time, always
before any connection is made. Names resolve through a stub resolver and connections go to a
recording httpcore mock backend, so no test here sends a packet anywhere."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpcore
import httpx
import pytest
from pydantic import ValidationError

from services.intake.handlers import on_request_job
from services.intake.settings import IntakeSettings
from services.notifier.delivery import Deliverer
from services.notifier.settings import NotifierSettings
from services.notifier.store import Delivery, DeliveryState
from shared.egress import (
    EgressGuard,
    EgressRefused,
    egress_problems_for_production,
    guarded_transport,
    parse_allow,
    url_problem,
)
from shared.events import RequestJob
from shared.jobs import JobRequest
from shared.messaging import PermanentError
from shared.metrics import ServiceMetrics
from tests.unit.test_intake_api import BODY, A, Harness
from tests.unit.test_notifier_store import FakeDeliveryStore, make_delivery

# Names a DNS server under an attacker's control could answer with internal addresses.
STUB_DNS: dict[str, list[str]] = {
    "rebind.attacker.example": ["127.0.0.1"],
    "metadata.attacker.example": ["169.254.169.254"],
    "intranet.attacker.example": ["10.1.2.3"],
    "v6.attacker.example": ["::1"],
    "mapped.attacker.example": ["::ffff:10.0.0.1"],
    "mixed.attacker.example": ["93.184.216.34", "192.168.0.1"],
    "public.example": ["93.184.216.34"],
    "localhost": ["127.0.0.1", "::1"],
    "localhost.": ["127.0.0.1", "::1"],
    "api.localhost": ["127.0.0.1"],
    "metadata.google.internal": ["169.254.169.254"],
    "metadata": ["169.254.169.254"],
    "printer.local": ["192.168.1.50"],
}

# Every spelling a URL can use to reach a non-public address (or to hide where it goes).
LITERAL_VECTORS = [
    "http://127.0.0.1/",
    "http://127.0.0.1:8080/admin",
    "http://127.1/",
    "http://0x7f.1/",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://017700000001/",
    "http://0177.0.0.1/",
    "http://127.0.0.1./",
    "http://0.0.0.0/",
    "http://0/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.170.2/v2/credentials",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://198.18.0.1/",
    "http://[::1]/",
    "http://[::]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::127.0.0.1]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[fd00:ec2::254]/",
    "http://[ff02::1]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://[2002:7f00:1::]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[64:ff9b::7f00:1]/",
    "http://user@127.0.0.1/",
    "http://example.com@127.0.0.1/",
    "http://localhost/",
    "http://LOCALHOST./",
    "http://api.localhost/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata/",
    "http://printer.local/",
    "ftp://example.com/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
]
NAME_VECTORS = [f"http://{name}/hook" for name in STUB_DNS if name.endswith("attacker.example")]


class RecordingBackend(httpcore.AsyncMockBackend):
    """Answers every connection with a canned 204 (no network) and records where it went."""

    def __init__(self) -> None:
        super().__init__([b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"])
        self.connected: list[str] = []

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        self.connected.append(host)
        return await super().connect_tcp(host, port, *args, **kwargs)


class StubResolver:
    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers  # per name, one answer per lookup (the last repeats)
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        queue = self.answers.get(host)
        if not queue:
            raise OSError(f"stub resolver: no answer for {host}")
        return queue.pop(0) if len(queue) > 1 else queue[0]


def stub_dns() -> StubResolver:
    return StubResolver({name: [answer] for name, answer in STUB_DNS.items()})


def guarded_client(
    resolver: StubResolver, allow: str = ""
) -> tuple[httpx.AsyncClient, RecordingBackend]:
    backend = RecordingBackend()
    guard = EgressGuard(parse_allow(allow), resolver)
    transport = guarded_transport(guard, inner=backend)
    return httpx.AsyncClient(transport=transport), backend


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    from faststream.kafka import TestKafkaBroker

    harness = Harness()
    async with TestKafkaBroker(harness.broker):
        yield harness


@pytest.fixture
async def intake(h: Harness) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=h.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as c:
        yield c


def test_the_vector_list_is_long_enough() -> None:
    assert len(LITERAL_VECTORS) + len(NAME_VECTORS) >= 30


@pytest.mark.parametrize("url", LITERAL_VECTORS)
@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/quote"])
async def test_intake_refuses_a_callback_to_a_non_public_target_with_a_422(
    h: Harness, intake: httpx.AsyncClient, url: str, path: str
) -> None:
    response = await intake.post(path, json={**BODY, "callback_url": url}, headers=A)
    assert response.status_code == 422, response.text
    assert "callback_url" in response.text
    assert h.repo.docs == {}


@pytest.mark.parametrize("url", LITERAL_VECTORS)
async def test_a_kafka_request_with_a_non_public_callback_is_dead_lettered_with_the_reason(
    h: Harness, url: str
) -> None:
    body = {**BODY, "callback_url": url}
    if url.split(":")[0] not in ("http", "https"):  # refused when the message is decoded
        with pytest.raises(ValidationError, match="callback_url"):
            JobRequest.model_validate(body)
        return
    request = JobRequest.model_validate(body)
    with pytest.raises(PermanentError, match="callback_url refused"):
        await on_request_job(h.deps, RequestJob(subject="k", tenant_id="ta", request=request))
    assert h.repo.docs == {}


async def test_the_request_topic_dead_letters_a_metadata_callback_with_the_reason() -> None:
    """Through the real consume() wiring on faststream's in-memory broker."""
    import functools

    from faststream import AckPolicy
    from faststream.kafka import TestKafkaBroker

    from shared.messaging import consume
    from shared.topics import Topic

    harness = Harness()
    consume(
        harness.broker,
        Topic.JOB_REQUESTS,
        group_id="intake",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decode=RequestJob.model_validate_json,
        handle=functools.partial(on_request_job, harness.deps),
    )
    dead: list[dict[str, Any]] = []

    @harness.broker.subscriber("job-requests-dlq", group_id="t", ack_policy=AckPolicy.ACK)
    async def record(body: dict[str, Any]) -> None:
        dead.append(body)

    request = JobRequest.model_validate({**BODY, "callback_url": "http://169.254.169.254/x"})
    command = RequestJob(subject="k", tenant_id="ta", request=request)
    async with TestKafkaBroker(harness.broker) as broker:
        await broker.publish(command.model_dump_json().encode(), "job-requests", key=b"k")
    assert [d["reason"] for d in dead] == [
        "callback_url refused: 169.254.169.254 is link-local (where cloud metadata services live)"
    ]
    assert harness.repo.docs == {}


async def test_intake_accepts_a_public_callback_and_the_allow_listed_local_receiver(
    h: Harness, intake: httpx.AsyncClient
) -> None:
    ok = await intake.post(
        "/v1/jobs", json={**BODY, "callback_url": "https://hooks.example.com/v"}, headers=A
    )
    assert ok.status_code == 202
    local = {**BODY, "callback_url": "http://127.0.0.1:9000/hook"}
    refused = await intake.post("/v1/quote", json=local, headers=A)
    assert refused.status_code == 422
    assert refused.json()["detail"]["message"] == ("callback_url refused: 127.0.0.1 is loopback")
    h.deps.settings = IntakeSettings(egress_allow="127.0.0.1/32,::1/128")
    assert (await intake.post("/v1/quote", json=local, headers=A)).status_code == 200
    assert (
        await intake.post(
            "/v1/quote", json={**local, "callback_url": "http://localhost:9/"}, headers=A
        )
    ).status_code == 200
    assert (
        await intake.post(
            "/v1/quote", json={**local, "callback_url": "http://10.0.0.1/"}, headers=A
        )
    ).status_code == 422


@pytest.mark.parametrize("url", LITERAL_VECTORS + NAME_VECTORS)
async def test_the_notifier_refuses_at_send_time_before_connecting(url: str) -> None:
    store = FakeDeliveryStore()
    delivery = make_delivery(url=url)
    await store.insert(delivery)
    client, backend = guarded_client(stub_dns())
    dead: list[str] = []

    async def dead_letter(d: Delivery, reason: str) -> None:
        dead.append(reason)

    from prometheus_client import CollectorRegistry

    deliverer = Deliverer(
        store=store,
        client=client,
        dead_letter=dead_letter,
        metrics=ServiceMetrics(CollectorRegistry(), "notifier"),
        master_secret="m",
        schedule=(5, 30),
    )
    assert await deliverer.run_once() == 1
    assert backend.connected == []  # refused before any connection
    stored = store.docs[delivery.id]
    assert stored.state is DeliveryState.DEAD  # dead at once: retrying cannot make it public
    assert dead and dead[0].startswith("egress refused: ")


@pytest.mark.parametrize(
    "url",
    [u for u in LITERAL_VECTORS if u.startswith("http://") and "0177." not in u] + NAME_VECTORS,
)
async def test_the_transport_refuses_the_connection_itself(url: str) -> None:
    """Below the URL check: any client built on the guarded transport (provider downloads and
    their redirects) cannot connect to a non-public address, whatever the URL parser said.
    (httpx does not even parse `0177.0.0.1`; pydantic normalises it to 127.0.0.1 at intake.)"""
    client, backend = guarded_client(stub_dns())
    try:
        with pytest.raises(EgressRefused, match=r" is | embeds "):
            await client.get(url)
    finally:
        await client.aclose()
    assert backend.connected == []


async def test_dns_rebinding_cannot_switch_the_address_after_the_check() -> None:
    """The first lookup says public, the next says loopback: each connection resolves once,
    and connects to exactly the address it vetted."""
    resolver = StubResolver({"flip.example": [["93.184.216.34"], ["127.0.0.1"]]})
    client, backend = guarded_client(resolver)
    first = await client.get("http://flip.example/a", headers={"connection": "close"})
    assert first.status_code == 204
    assert backend.connected == ["93.184.216.34"]  # pinned: the vetted address, not the name
    assert first.request.headers["host"] == "flip.example"
    with pytest.raises(EgressRefused, match=re.escape("127.0.0.1 is loopback")):
        await client.get("http://flip.example/b")
    assert backend.connected == ["93.184.216.34"]
    assert resolver.lookups == ["flip.example", "flip.example"]  # one lookup per connection
    await client.aclose()


async def test_a_failed_lookup_is_a_transient_connect_error_not_a_refusal() -> None:
    client, backend = guarded_client(StubResolver({}))
    with pytest.raises(httpx.ConnectError, match="cannot resolve"):
        await client.get("http://nowhere.example/")
    assert backend.connected == []
    await client.aclose()


async def test_a_mixed_answer_is_refused_whole() -> None:
    client, backend = guarded_client(stub_dns())
    with pytest.raises(EgressRefused, match=re.escape("192.168.0.1 is private")):
        await client.get("http://mixed.attacker.example/")
    assert backend.connected == []
    await client.aclose()


async def test_a_redirect_to_the_metadata_address_is_refused_at_connect() -> None:
    resolver = stub_dns()
    backend = RecordingBackend()
    backend._buffer = [  # the mock backend's canned bytes: a 302 to metadata
        b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest\r\n"
        b"Content-Length: 0\r\n\r\n"
    ]
    transport = guarded_transport(EgressGuard((), resolver), inner=backend)
    async with httpx.AsyncClient(transport=transport, follow_redirects=True) as client:
        with pytest.raises(EgressRefused, match=re.escape("169.254.169.254 is link-local")):
            await client.get("http://public.example/video.mp4")
    assert backend.connected == ["93.184.216.34"]


async def test_the_allow_list_lets_local_development_reach_loopback_only() -> None:
    client, backend = guarded_client(stub_dns(), allow="127.0.0.1/32,::1/128")
    assert (await client.get("http://rebind.attacker.example/")).status_code == 204
    with pytest.raises(EgressRefused):
        await client.get("http://intranet.attacker.example/")
    assert backend.connected == ["127.0.0.1"]
    await client.aclose()


def test_production_refuses_an_allow_list_and_a_bad_entry_is_a_settings_error() -> None:
    assert egress_problems_for_production(NotifierSettings()) == []
    problems = egress_problems_for_production(NotifierSettings(egress_allow="127.0.0.1/32"))
    assert len(problems) == 1 and "EGRESS_ALLOW=127.0.0.1/32" in problems[0]
    with pytest.raises(ValidationError, match="EGRESS_ALLOW"):
        NotifierSettings(egress_allow="127.0.0.1/33")


@pytest.mark.parametrize(
    "url", ["https://example.com/hook", "http://8.8.8.8/", "http://[2001:4860:4860::8888]/"]
)
def test_public_targets_pass_the_static_check(url: str) -> None:
    assert url_problem(url) is None
