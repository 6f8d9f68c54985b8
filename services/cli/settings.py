from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CliSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REELFORGE_", extra="ignore", frozen=True)

    url: str = Field("http://127.0.0.1:8080", description="The intake API.")
    api_key: str = Field("demo-key", description="Your API key.")
    run_dir: str = Field(".reelforge-run", description="Where `up` keeps logs and pid files.")
    catalog_override_file: str | None = Field(
        None,
        validation_alias=AliasChoices("CATALOG_OVERRIDE_FILE", "catalog_override_file"),
        description="`models --local`: the operator's catalog file merged onto the bundled one.",
    )
