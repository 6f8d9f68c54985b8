"""Production mode (`REELFORGE_ENV=production`): a service refuses to start while anything
would let an outsider in, and names every problem, one per line.

A check is a function from the settings objects of the process to a list of problems (each
one line, starting with the setting's environment variable). `PRODUCTION_CHECKS` holds them;
another module adds its own with `production_check` (the egress allow-list check belongs to
the egress policy). `refuse_to_start_if_unsafe` runs them all in production mode only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from shared.errors import ConfigurationError

ProductionCheck = Callable[[Sequence[BaseSettings]], list[str]]
PRODUCTION_CHECKS: list[ProductionCheck] = []

# Field names that hold credentials; their built-in defaults are published in this repository.
SECRET_WORDS = ("key", "token", "secret", "password")
# The API keys of the README's examples, refused even inside a changed list.
DEMO_API_KEYS = frozenset({"demo-key", "other-key"})
# Provider credentials belong to the provider their field name starts with.
PROVIDER_PREFIXES = {
    "openai_": "openai",
    "gemini_": "gemini",
    "vertex_": "vertex",
    "runwayml_": "runway",
    "kling_": "kling",
    "fal_": "fal",
    "replicate_": "replicate",
}


def production_check(check: ProductionCheck) -> ProductionCheck:
    """Register `check` (usable as a decorator); registering twice is a no-op."""
    if check not in PRODUCTION_CHECKS:
        PRODUCTION_CHECKS.append(check)
    return check


def is_production(settings: BaseSettings) -> bool:
    return getattr(settings, "reelforge_env", "development") == "production"


def production_problems(settings: Sequence[BaseSettings]) -> list[str]:
    problems: list[str] = []
    for check in PRODUCTION_CHECKS:
        for problem in check(settings):
            if problem not in problems:
                problems.append(problem)
    return problems


def refuse_to_start_if_unsafe(settings: Sequence[BaseSettings]) -> None:
    """In production mode, raise `ConfigurationError` listing every problem; else nothing."""
    if not settings or not is_production(settings[0]):
        return
    problems = production_problems(settings)
    if problems:
        raise ConfigurationError(
            "REELFORGE_ENV=production",
            f"refusing to start ({len(problems)} problems):\n  " + "\n  ".join(problems),
        )


def env_name(settings: BaseSettings, name: str) -> str:
    field = type(settings).model_fields[name]
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    if isinstance(alias, str):
        return alias
    prefix = str(settings.model_config.get("env_prefix") or "")
    return f"{prefix}{name}".upper()


def _is_secret(name: str, field: FieldInfo) -> bool:
    return field.annotation in (SecretStr, SecretStr | None) or any(
        word in name for word in SECRET_WORDS
    )


def _plain(value: object) -> object:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _provider_of(name: str) -> str | None:
    return next((p for prefix, p in PROVIDER_PREFIXES.items() if name.startswith(prefix)), None)


def _enabled_providers(settings: Sequence[BaseSettings]) -> set[str] | None:
    """Providers this process uses (None: the process says nothing, so all of them)."""
    for s in settings:
        providers = getattr(s, "providers", None)
        if callable(providers):
            return set(providers())
        provider = getattr(s, "provider", None)
        if isinstance(provider, str):
            return {provider}
    return None


@production_check
def default_secrets(settings: Sequence[BaseSettings]) -> list[str]:
    """Every credential still at its built-in default (empty ones are "not configured", which
    each feature treats as disabled, so they are not defaults to refuse)."""
    enabled = _enabled_providers(settings)
    problems = []
    for s in settings:
        for name, field in type(s).model_fields.items():
            if not _is_secret(name, field):
                continue
            provider = _provider_of(name)
            if provider is not None and enabled is not None and provider not in enabled:
                continue
            value = _plain(getattr(s, name))
            default = _plain(field.get_default(call_default_factory=True))
            if value and value == default:
                problems.append(f"{env_name(s, name)} still has its built-in default")
    return problems


@production_check
def demo_api_keys(settings: Sequence[BaseSettings]) -> list[str]:
    problems = []
    for s in settings:
        spec = getattr(s, "api_keys", None)
        if not isinstance(spec, str) or spec == type(s).model_fields["api_keys"].default:
            continue  # the default itself is reported by default_secrets
        keys = {entry.strip().partition(":")[0] for entry in spec.split(",") if entry.strip()}
        for key in sorted(keys & DEMO_API_KEYS):
            problems.append(f"{env_name(s, 'api_keys')} contains the demo key {key!r}")
    return problems


@production_check
def non_atomic_store(settings: Sequence[BaseSettings]) -> list[str]:
    return [
        f"{env_name(s, 'allow_non_atomic_store')} is for local tests only"
        for s in settings
        if getattr(s, "allow_non_atomic_store", False)
    ]


@production_check
def egress_allow_list(settings: Sequence[BaseSettings]) -> list[str]:
    """The egress allow-list lets webhooks and downloads reach non-public addresses: local
    development only."""
    from shared.egress import egress_problems_for_production
    from shared.settings import EgressSettings

    problems: list[str] = []
    for s in settings:
        if isinstance(s, EgressSettings):
            problems += egress_problems_for_production(s)
    return problems
