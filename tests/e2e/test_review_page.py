"""The review page in headless Chromium (Debian's chromium + chromedriver, driven by Selenium):
open the queue, play a candidate, reject it with feedback and see the new attempt appear,
approve another.

The QC HTTP app runs in uvicorn on 127.0.0.1 against in-memory fakes; its candidates are
real clips scored for real. Until the pipeline's intake consumes `job-requests` here, a
stand-in does what intake does with a `RequestJob`: it creates the job under the request's
idempotency key, which is how the page finds and shows the new attempt.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import Response
from prometheus_client import CollectorRegistry

from services.qc.app import wire
from services.qc.settings import QcSettings
from shared.events import Envelope, RequestJob
from shared.jobs import Job, new_job_id
from shared.runtime import ServiceProcess
from shared.topics import Topic
from tests.fakes import FakeBlobStore, FakeJobRepository
from tests.qc_clips import labelled_set, write_clip
from tests.qc_fakes import (
    FakeReviewStore,
    RecordingPublisher,
    job_with_candidates,
    small_clip_scorer,
)

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.e2e
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SCREENSHOTS = Path("/tmp/reelforge-review-page")


class ServedBlobStore(FakeBlobStore):
    """Presigned URLs that the browser can fetch: a route on the same test server."""

    base_url = ""

    async def presigned_get(self, key: str, expires_s: int = 3600) -> str:
        return f"{self.base_url}/_test/blobs/{key}"


class IntakeStandIn(RecordingPublisher):
    def __init__(self, repo: FakeJobRepository) -> None:
        super().__init__()
        self.repo = repo

    async def __call__(self, topic: Topic, event: Envelope) -> None:
        await super().__call__(topic, event)
        if isinstance(event, RequestJob):
            await asyncio.sleep(0.5)  # intake is another process: the page must wait for it
            await self.repo.create(
                Job(
                    job_id=new_job_id(),
                    tenant_id=event.tenant_id,
                    request=event.request,
                    idempotency_key=event.subject,
                    source="kafka",
                )
            )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, tmp: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        settings = QcSettings(api_keys="k-demo:demo,k-other:other", metrics_port=self.port)
        self.repo, self.blobs = FakeJobRepository(), ServedBlobStore()
        self.blobs.base_url = self.base
        self.reviews, self.sent = FakeReviewStore(), IntakeStandIn(self.repo)
        self.process = ServiceProcess(settings=settings, registry=CollectorRegistry())
        self.pipeline = wire(self.process, settings, self.repo, self.blobs, self.reviews, self.sent)
        self.pipeline.score = small_clip_scorer
        blobs = self.blobs

        @self.process.http.get("/_test/blobs/{key:path}", include_in_schema=False)
        async def blob(key: str) -> Response:
            return Response(blobs.objects[key][0], media_type="video/mp4")

        clips = {c.name: c for c in labelled_set()}
        self.clips = [
            write_clip(clips[n].spec, tmp / f"{n}.mp4") for n in ("shaky", "good", "black")
        ]

    async def seed(self) -> str:
        job = await job_with_candidates(self.blobs, "job_e2e_review", self.clips)
        await self.repo.create(job)
        from shared.events import CandidateStored

        for attempt in job.attempts.values():
            assert attempt.video is not None
            await self.pipeline.on_candidate_stored(
                CandidateStored(
                    subject=job.job_id,
                    tenant_id=job.tenant_id,
                    attempt_id=attempt.attempt_id,
                    video=attempt.video,
                )
            )
        return job.job_id


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    app = Served(tmp_path_factory.mktemp("review-page"))
    server = uvicorn.Server(
        uvicorn.Config(
            app.process.http, host="127.0.0.1", port=app.port, log_level="warning", lifespan="off"
        )
    )
    ready = threading.Event()

    def run() -> None:
        async def main() -> None:
            app.job_id = await app.seed()  # type: ignore[attr-defined]
            ready.set()
            await server.serve()

        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(60), "the QC app did not start"
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield app
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    if not (CHROMIUM and DRIVER):
        pytest.skip(
            "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1400,900",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=DRIVER)
    )
    yield driver
    driver.quit()


def _wait(driver: webdriver.Chrome, timeout: float = 15) -> WebDriverWait:
    return WebDriverWait(driver, timeout, poll_frequency=0.1)


def _open_queue(driver: webdriver.Chrome, served: Served) -> list:  # type: ignore[type-arg]
    driver.get(f"{served.base}/review")
    driver.find_element(By.ID, "api-key").send_keys("k-demo")
    driver.find_element(By.ID, "load").click()
    return _wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#queue li.review-item"))


def test_reviewer_plays_rejects_with_feedback_and_approves(
    served: Served, browser: webdriver.Chrome
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    items = _open_queue(browser, served)
    assert len(items) == 2, [i.text for i in items]
    shaky = next(i for i in items if "not picked" in i.text)
    shaky.click()
    cards = _wait(browser).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#candidates .candidate")
    )
    assert len(cards) == 3
    assert "picked" in cards[1].text
    assert "too_shaky" in cards[0].text

    video = cards[0].find_element(By.TAG_NAME, "video")
    browser.execute_script("arguments[0].play();", video)
    _wait(browser).until(
        lambda d: d.execute_script("return arguments[0].currentTime;", video) > 0.2
    )
    assert browser.execute_script("return arguments[0].videoWidth;", video) == 320
    browser.save_screenshot(str(SCREENSHOTS / "1-playing.png"))

    browser.find_element(By.ID, "feedback").send_keys("the camera wobbles like a handheld phone")
    browser.find_element(By.ID, "reject").click()
    _wait(browser).until(ec.text_to_be_present_in_element((By.ID, "decision-status"), "rejected"))
    _wait(browser).until(ec.text_to_be_present_in_element((By.ID, "refinement"), "refine-"))
    _wait(browser).until(ec.text_to_be_present_in_element((By.ID, "new-attempt"), "new job job_"))
    refinement = browser.find_element(By.ID, "refinement").text
    assert "Avoid: the camera wobbles like a handheld phone." in refinement
    assert "Fix: a steady, stabilised camera." in refinement
    browser.save_screenshot(str(SCREENSHOTS / "2-rejected.png"))
    (request,) = served.sent.on(Topic.JOB_REQUESTS)
    assert isinstance(request, RequestJob)
    assert request.request.metadata["refines"] == "job_e2e_review"

    black_card = browser.find_element(
        By.CSS_SELECTOR, '#candidates .candidate[data-attempt-id="att2"]'
    )
    assert "disqualified" not in black_card.text
    assert "black_frames" in black_card.text
    black_card.find_element(By.LINK_TEXT, "review this candidate").click()
    _wait(browser).until(ec.text_to_be_present_in_element((By.ID, "decision-status"), "pending"))
    browser.find_element(By.ID, "approve").click()
    _wait(browser).until(ec.text_to_be_present_in_element((By.ID, "decision-status"), "approved"))
    browser.save_screenshot(str(SCREENSHOTS / "3-approved.png"))
    statuses = sorted(r.status.value for r in served.reviews.docs.values())
    assert statuses == ["approved", "rejected"]
    assert len(served.sent.on(Topic.JOB_REQUESTS)) == 1, "approving requests no new attempt"
