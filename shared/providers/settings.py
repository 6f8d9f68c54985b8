"""Provider credentials and endpoints, read once from the environment and passed down.

The defaults point every adapter at the local provider emulator (`python -m services.emulator`,
http://127.0.0.1:8090) with keys it accepts, so nothing leaves the machine unless a real base URL
and key are configured. Env names follow each provider's SDK where one exists
(OPENAI_API_KEY, RUNWAYML_API_SECRET, ...).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

EMULATOR = "http://127.0.0.1:8090"
# The public half of the emulator's fal webhook key (services/emulator/fal_api.py).
EMULATOR_FAL_JWKS = (
    '{"keys":[{"kty":"OKP","crv":"Ed25519","x":"_6b2gEBQxERuAXpYdmo0rE6Q0oHySNME1vjL227VZcc",'
    '"kid":"emulator-fal-1","use":"sig"}]}'
)


class ProviderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    openai_api_key: SecretStr = Field(SecretStr("sk-emulator"), description="OpenAI API key.")
    openai_base_url: str = Field(f"{EMULATOR}/openai/v1", description="OpenAI API base (…/v1).")
    openai_organization: str | None = Field(None, description="OpenAI-Organization header.")
    openai_project: str | None = Field(None, description="OpenAI-Project header.")
    openai_webhook_secret: SecretStr | None = Field(
        SecretStr("whsec_ZW11bGF0b3Itb3BlbmFpLXdlYmhvb2stc2VjcmV0"),
        description="Standard Webhooks secret of the OpenAI project (default: the emulator's).",
    )

    gemini_api_key: SecretStr = Field(SecretStr("emulator-gemini-key"), description="Gemini key.")
    gemini_base_url: str = Field(f"{EMULATOR}/gemini", description="Gemini API origin.")
    gemini_webhook_secret: SecretStr | None = Field(
        SecretStr("whsec_ZW11bGF0b3ItZ2VtaW5pLXdlYmhvb2stc2VjcmV0"),
        description="Standard Webhooks secret of the Gemini static webhook.",
    )
    gemini_video_delivery: Literal["inline", "uri"] = Field(
        "inline",
        description="Interactions API video delivery (response_format.delivery): inline base64 "
        "in the interaction, or a URI to download.",
    )

    vertex_project: str = Field("reelforge-local", description="Google Cloud project id.")
    vertex_location: str = Field("us-central1", description="Vertex AI location.")
    vertex_access_token: SecretStr = Field(
        SecretStr("emulator-vertex-token"), description="OAuth2 access token (cloud-platform)."
    )
    vertex_base_url: str = Field(f"{EMULATOR}/vertex", description="Vertex AI origin.")
    vertex_gcs_base_url: str = Field(
        f"{EMULATOR}/vertex/gcs",
        description="GCS origin for gs:// results: {base}/{bucket}/{object} "
        "(https://storage.googleapis.com for real buckets).",
    )
    vertex_storage_uri: str | None = Field(
        None, description="gs:// prefix for results; inline base64 results when unset."
    )
    vertex_generate_audio: bool | None = Field(
        None, description="Force generateAudio; None follows each request's `audio`."
    )

    runwayml_api_secret: SecretStr = Field(SecretStr("key_emulator"), description="Runway key.")
    runway_base_url: str = Field(f"{EMULATOR}/runway", description="Runway API origin.")

    kling_access_key: SecretStr = Field(SecretStr("emulator-ak"), description="Kling access key.")
    kling_secret_key: SecretStr = Field(
        SecretStr("emulator-sk-reelforge-local-hs256-key"), description="Kling secret key."
    )
    kling_base_url: str = Field(f"{EMULATOR}/kling", description="Kling API origin.")

    fal_key: SecretStr = Field(SecretStr("emulator-fal-key"), description="fal API key (FAL_KEY).")
    fal_queue_base_url: str = Field(
        f"{EMULATOR}/fal/queue", description="fal queue origin (https://queue.fal.run)."
    )
    fal_webhook_jwks: str | None = Field(
        EMULATOR_FAL_JWKS,
        description="JWKS text of fal's webhook keys (https://rest.alpha.fal.ai/.well-known/"
        "jwks.json; default: the emulator's key).",
    )

    replicate_api_token: SecretStr = Field(
        SecretStr("r8_emulator"), description="Replicate API token (REPLICATE_API_TOKEN)."
    )
    replicate_base_url: str = Field(
        f"{EMULATOR}/replicate", description="Replicate API origin (https://api.replicate.com)."
    )
    replicate_webhook_secret: SecretStr | None = Field(
        SecretStr("whsec_ZW11bGF0b3ItcmVwbGljYXRlLXdlYmhvb2stc2VjcmV0"),
        description="Standard Webhooks secret from GET /v1/webhooks/default/secret.",
    )


def secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()
