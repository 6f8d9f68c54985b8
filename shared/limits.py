"""Input limits: what every field of a job request may hold, so that the job store, Kafka
and the providers accept whatever intake accepts (pure; no I/O).

Why each bound exists:
- strings: no NUL (PostgreSQL text/jsonb and BSON keys refuse it) and valid UTF-8 (no lone
  surrogates, which no encoder can write);
- integers: `seed` within what every provider takes (an unsigned 32-bit value; the wider
  int64 of the stores is therefore never reached);
- `metadata`: copied into every outcome event, so its total size is capped well below a
  Kafka message (`MAX_EVENT_BYTES`);
- `image_url`: https or an inline `data:image/...;base64,` URI, small enough that the
  `RequestJob` carrying it fits a Kafka message too.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints

# Kafka's default `max.message.bytes` is 1,048,588; every event we write stays below this.
MAX_EVENT_BYTES = 1_000_000
SEED_MAX = 2**32 - 1
METADATA_MAX_ENTRIES = 64
METADATA_MAX_KEY_CHARS = 128
METADATA_MAX_BYTES = 16_384  # keys and values, UTF-8
IMAGE_URL_MAX_CHARS = 2_048  # an https URL
IMAGE_DATA_URI_MAX_CHARS = 700_000  # about 512 KiB of image, base64
IMAGE_DATA_PREFIXES = tuple(
    f"data:image/{kind};base64," for kind in ("png", "jpeg", "jpg", "webp", "gif")
)
MAX_BODY_BYTES = 1_048_576  # HTTP request bodies, before parsing
MAX_WEBHOOK_BODY_BYTES = 65_536  # provider webhooks (hints of a few hundred bytes)
IDEMPOTENCY_KEY_MAX_CHARS = 200


def storable_text(value: str) -> str:
    """A string every store and encoder takes: no NUL, no lone surrogate."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid UTF-8 (no lone surrogates)") from exc
    return value


StorableStr = Annotated[str, AfterValidator(storable_text)]
# Ids and cursors taken from paths and query strings: looked up in the store as they are.
IdParam = Annotated[
    str, StringConstraints(min_length=1, max_length=200), AfterValidator(storable_text)
]


def check_metadata(metadata: dict[str, str]) -> dict[str, str]:
    if len(metadata) > METADATA_MAX_ENTRIES:
        raise ValueError(f"at most {METADATA_MAX_ENTRIES} entries (got {len(metadata)})")
    size = 0
    for key, value in metadata.items():
        storable_text(key)
        storable_text(value)
        if not key or len(key) > METADATA_MAX_KEY_CHARS:
            raise ValueError(f"keys must have 1-{METADATA_MAX_KEY_CHARS} characters")
        if key.startswith("$") or "." in key:
            raise ValueError(f"key {key[:40]!r}: '$' at the start and '.' are reserved")
        size += len(key.encode()) + len(value.encode())
    if size > METADATA_MAX_BYTES:
        raise ValueError(
            f"keys and values total {size} bytes; at most {METADATA_MAX_BYTES} "
            "(metadata is copied into every outcome event)"
        )
    return metadata


def check_image_url(url: str) -> str:
    storable_text(url)
    if url.startswith("data:"):
        if not url.startswith(IMAGE_DATA_PREFIXES):
            raise ValueError("a data: URI must be data:image/<png|jpeg|webp|gif>;base64,...")
        if len(url) > IMAGE_DATA_URI_MAX_CHARS:
            raise ValueError(f"a data: URI may have at most {IMAGE_DATA_URI_MAX_CHARS} characters")
        return url
    if not url.lower().startswith("https://"):
        raise ValueError("must be an https:// URL or a data:image/...;base64, URI")
    if len(url) > IMAGE_URL_MAX_CHARS:
        raise ValueError(f"an https URL may have at most {IMAGE_URL_MAX_CHARS} characters")
    if any(c.isspace() for c in url):
        raise ValueError("must not contain whitespace")
    return url


Metadata = Annotated[dict[str, str], AfterValidator(check_metadata)]
ImageUrl = Annotated[str, AfterValidator(check_image_url)]
