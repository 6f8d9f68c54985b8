"""Failure classes decided from the providers' own codes and bodies (issue 13).

Sources: Runway "Task failures" (docs.dev.runwayml.com/errors/task-failures); Google's
`google.rpc.RetryInfo` / `QuotaFailure` error details (Gemini API rate-limit docs); Veo's
"Responsible AI and usage guidelines" (input vs output filtering wording); Kling's callback
protocol (task_status_msg carries the failure reason).
"""

from __future__ import annotations

import httpx
import pytest

from shared.providers import http
from shared.providers.errors import (
    RETRY_ADVICE,
    FailureClass,
    ProviderRejected,
    ProviderUnavailable,
)
from shared.providers.http import classify_response
from shared.providers.kling import task_failure
from shared.providers.runway import failure_class_for
from shared.providers.veo import filtered_failure, grpc_failure

RATE_LIMITS_URL = "https://ai.google.dev/gemini-api/docs/rate-limits"


def google_429(quota_id: str | None, retry_delay: str | None, message: str) -> httpx.Response:
    details: list[dict[str, object]] = []
    if quota_id is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/predict_long_running",
                        "quotaId": quota_id,
                        "quotaValue": "10",
                    }
                ],
            }
        )
    details.append(
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [{"description": "Learn more", "url": RATE_LIMITS_URL}],
        }
    )
    if retry_delay is not None:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}
        )
    body = {
        "error": {
            "code": 429,
            "message": message,
            "status": "RESOURCE_EXHAUSTED",
            "details": details,
        }
    }
    return httpx.Response(429, json=body)


PER_MINUTE_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. "
    "Please retry in 32.4s."
)


@pytest.mark.parametrize(
    ("code", "failure_class"),
    [
        ("INPUT_PREPROCESSING.SAFETY.TEXT", FailureClass.MODERATION_INPUT),
        ("SAFETY.INPUT.TEXT", FailureClass.MODERATION_INPUT),
        ("SAFETY.INPUT.IMAGE", FailureClass.MODERATION_INPUT),
        ("SAFETY.OUTPUT.VIDEO", FailureClass.MODERATION_INPUT),
        ("INPUT_PREPROCESSING.INTERNAL", FailureClass.PROVIDER_ERROR),
        ("INTERNAL.BAD_OUTPUT.CODE01", FailureClass.GENERATION_FAILED),
        ("ASSET.INVALID", FailureClass.INVALID_INPUT),
        ("INTERNAL", FailureClass.GENERATION_FAILED),
    ],
)
def test_runway_failure_codes_map_to_the_documented_class(
    code: str, failure_class: FailureClass
) -> None:
    assert failure_class_for(code) is failure_class


@pytest.mark.parametrize(
    "code", ["INPUT_PREPROCESSING.SAFETY.TEXT", "SAFETY.INPUT.TEXT", "SAFETY.OUTPUT.VIDEO"]
)
def test_no_runway_safety_code_is_retried_or_sent_elsewhere_with_the_same_prompt(
    code: str,
) -> None:
    advice = RETRY_ADVICE[failure_class_for(code)]
    assert not advice.retry_same_provider
    assert not advice.fallback_to_other_provider


def test_runway_preprocessing_internal_error_is_retried() -> None:
    assert RETRY_ADVICE[failure_class_for("INPUT_PREPROCESSING.INTERNAL")].retry_same_provider


@pytest.mark.parametrize(("delay", "seconds"), [("32s", 32.0), ("1.5s", 1.5), ("0.25s", 0.25)])
def test_a_google_per_minute_429_is_rate_limited_with_the_retry_info_delay(
    delay: str, seconds: float
) -> None:
    response = google_429("GenerateRequestsPerMinutePerProjectPerModel", delay, PER_MINUTE_MESSAGE)
    error = classify_response(response, "gemini")
    assert isinstance(error, ProviderUnavailable)
    assert error.failure_class is FailureClass.RATE_LIMITED
    assert error.retry_after == seconds


def test_a_google_per_minute_429_without_retry_info_is_still_rate_limited() -> None:
    response = google_429("GenerateRequestsPerMinutePerProjectPerModel", None, PER_MINUTE_MESSAGE)
    error = classify_response(response, "gemini")
    assert error.failure_class is FailureClass.RATE_LIMITED
    assert error.retry_after is None


def test_a_google_per_day_quota_violation_is_quota_exhausted_even_with_retry_info() -> None:
    response = google_429("GenerateRequestsPerDayPerProjectPerModel", "3600s", PER_MINUTE_MESSAGE)
    error = classify_response(response, "gemini")
    assert isinstance(error, ProviderRejected)
    assert error.failure_class is FailureClass.QUOTA_EXHAUSTED


def test_google_prepayment_credits_depleted_is_quota_exhausted() -> None:
    message = "Your prepayment credits are depleted. Please go to AI Studio to manage billing."
    error = classify_response(google_429(None, None, message), "gemini")
    assert error.failure_class is FailureClass.QUOTA_EXHAUSTED


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("32s", 32.0), ("1.5s", 1.5), ("0s", 0.0), ("5", None), ("", None), ("-1s", None)],
)
def test_reads_a_protobuf_duration_from_retry_info(value: str, seconds: float | None) -> None:
    details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": value}]
    assert http.google_retry_delay({"error": {"details": details}}) == seconds


@pytest.mark.parametrize(
    ("reason", "failure_class"),
    [
        (
            "Veo could not generate videos because the input image violates Vertex AI's "
            "usage guidelines. Support codes: 15236754",
            FailureClass.MODERATION_INPUT,
        ),
        (
            "The prompt could not be submitted. This prompt contains sensitive words that "
            "violate Google's Responsible AI practices. Support codes: 90789179",
            FailureClass.MODERATION_INPUT,
        ),
        (
            "Sorry, we can't create videos from input images containing photorealistic "
            "children. Please try a different image. Support codes: 58061214",
            FailureClass.MODERATION_INPUT,
        ),
        (
            "Your current safety settings for person generation blocked 1 video. You will not "
            "be charged for blocked videos.",
            FailureClass.MODERATION_OUTPUT,
        ),
        ("1 video(s) removed by the safety filter", FailureClass.MODERATION_OUTPUT),
    ],
)
def test_veo_tells_input_from_output_filtering_by_the_reason(
    reason: str, failure_class: FailureClass
) -> None:
    failure = filtered_failure({"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [reason]})
    assert failure is not None
    assert failure.failure_class is failure_class


def test_a_veo_operation_error_about_usage_guidelines_is_input_moderation() -> None:
    failure = grpc_failure(
        {
            "code": 3,
            "message": "The prompt could not be submitted: it violates Vertex AI's usage "
            "guidelines. Support codes: 89371032",
        }
    )
    assert failure.failure_class is FailureClass.MODERATION_INPUT


@pytest.mark.parametrize(
    ("message", "failure_class"),
    [
        ("Failure to pass the risk control system", FailureClass.MODERATION_OUTPUT),
        (
            "The input image failed to pass the risk control system",
            FailureClass.MODERATION_INPUT,
        ),
        ("Prompt triggered the content security policy", FailureClass.MODERATION_INPUT),
        ("Internal error", FailureClass.GENERATION_FAILED),
    ],
)
def test_kling_tells_input_from_output_moderation_by_the_task_message(
    message: str, failure_class: FailureClass
) -> None:
    assert task_failure(message).failure_class is failure_class
