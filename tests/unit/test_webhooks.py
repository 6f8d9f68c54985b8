"""Standard Webhooks signing/verification, and byte-compatibility with openai-python."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import openai
import pytest

from shared.webhooks import (
    WebhookVerificationError,
    compute_signature,
    generate_secret,
    secret_key,
    sign_headers,
    verify,
)

SECRET = "whsec_" + base64.b64encode(b"a-32-byte-secret-for-the-tests!!").decode()
BODY = b'{"id":"evt_1","object":"event","type":"video.completed","data":{"id":"video_1"}}'


def test_signed_headers_verify() -> None:
    verify(SECRET, BODY, sign_headers(SECRET, BODY))


def test_signature_is_hmac_sha256_of_id_timestamp_body_with_decoded_whsec_key() -> None:
    headers = sign_headers(SECRET, BODY, webhook_id="msg_1", timestamp=1_700_000_000)
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    expected = hmac.new(key, b"msg_1.1700000000." + BODY, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()


def test_secret_without_prefix_is_used_as_raw_utf8_bytes() -> None:
    assert secret_key("plain-secret") == b"plain-secret"
    verify("plain-secret", BODY, sign_headers("plain-secret", BODY))


def test_generated_secret_round_trips() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(secret_key(secret)) == 24
    verify(secret, BODY, sign_headers(secret, BODY))


def test_any_of_several_space_separated_signatures_may_match() -> None:
    headers = sign_headers(SECRET, BODY)
    headers["webhook-signature"] = "v1,bm90LWl0 " + headers["webhook-signature"] + " v2,ignored"
    verify(SECRET, BODY, headers)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda h: h.update({"webhook-signature": "v1,AAAA"}),
        lambda h: h.update({"webhook-id": "msg_other"}),
        lambda h: h.pop("webhook-id"),
        lambda h: h.update({"webhook-timestamp": "soon"}),
    ],
)
def test_tampered_headers_raise_a_clear_error(mutate: object) -> None:
    headers = sign_headers(SECRET, BODY)
    mutate(headers)  # type: ignore[operator]
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, BODY, headers)


def test_tampered_body_or_wrong_secret_fails() -> None:
    headers = sign_headers(SECRET, BODY)
    with pytest.raises(WebhookVerificationError, match="no webhook signature matches"):
        verify(SECRET, BODY + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        verify(generate_secret(), BODY, headers)


def test_timestamps_outside_the_tolerance_are_rejected_both_ways() -> None:
    now = int(time.time())
    verify(SECRET, BODY, sign_headers(SECRET, BODY, timestamp=now - 299))
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(SECRET, BODY, sign_headers(SECRET, BODY, timestamp=now - 301))
    with pytest.raises(WebhookVerificationError, match="too new"):
        verify(SECRET, BODY, sign_headers(SECRET, BODY, timestamp=now + 301))
    verify(SECRET, BODY, sign_headers(SECRET, BODY, timestamp=now - 1000), tolerance=2000)


def test_header_names_are_case_insensitive() -> None:
    headers = {k.title(): v for k, v in sign_headers(SECRET, BODY).items()}
    verify(SECRET, BODY, headers)


@pytest.mark.parametrize("secret", [SECRET, "raw-secret-bytes"])
def test_openai_sdk_accepts_our_signatures(secret: str) -> None:
    client = openai.OpenAI(api_key="sk-test")
    client.webhooks.verify_signature(BODY, sign_headers(secret, BODY), secret=secret)
    client.webhooks.verify_signature(BODY.decode(), sign_headers(secret, BODY), secret=secret)


def test_we_accept_what_the_openai_sdk_accepts_and_reject_what_it_rejects() -> None:
    client = openai.OpenAI(api_key="sk-test")
    ts = str(int(time.time()))
    good = {
        "webhook-id": "msg_x",
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + compute_signature(SECRET, "msg_x", ts, BODY),
    }
    client.webhooks.verify_signature(BODY, good, secret=SECRET)
    verify(SECRET, BODY, good)
    bad = {**good, "webhook-signature": "v1," + compute_signature(SECRET, "msg_y", ts, BODY)}
    with pytest.raises(openai.InvalidWebhookSignatureError):
        client.webhooks.verify_signature(BODY, bad, secret=SECRET)
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, BODY, bad)
