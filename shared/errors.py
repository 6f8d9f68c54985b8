"""Errors shared by services (provider errors live in `shared.providers.errors`).

ReelforgeError
├── ConfigurationError      a setting is wrong: say which one, in one line, and exit
└── DependencyUnavailable   a server (Kafka, MongoDB, S3) cannot be reached right now
"""

from __future__ import annotations


class ReelforgeError(Exception):
    """Base of the project's own errors."""


class ConfigurationError(ReelforgeError):
    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting


class DependencyUnavailable(ReelforgeError):
    def __init__(self, dependency: str, problem: str) -> None:
        super().__init__(f"{dependency} unavailable: {problem}")
        self.dependency = dependency
