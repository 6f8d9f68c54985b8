"""Which errors count as an outage of a dependency (never dead-lettered) and which do not."""

from __future__ import annotations

import asyncpg
import pytest
import urllib3.exceptions
from aiokafka import errors as kafka_errors
from pydantic import ValidationError
from pymongo import errors as mongo_errors

from shared.errors import DependencyUnavailable
from shared.jobs import JobRequest
from shared.outages import is_outage


def raised_from(cause: BaseException, outer: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise outer from inner
    except BaseException as caught:
        return caught


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 15432)"),
        OSError(111, "Connect call failed ('127.0.0.1', 15432)"),
        TimeoutError(),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.InterfaceError("cannot perform operation: connection is closed"),
        mongo_errors.ServerSelectionTimeoutError("127.0.0.1:27017: connection refused"),
        mongo_errors.AutoReconnect("connection closed"),
        kafka_errors.KafkaConnectionError("no connection to node 1"),
        kafka_errors.KafkaTimeoutError(),
        kafka_errors.NotLeaderForPartitionError(),
        urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection"),  # type: ignore[arg-type]
        DependencyUnavailable("s3", "connection refused"),
        raised_from(ConnectionResetError(), RuntimeError("handler wrapped it")),
    ],
    ids=lambda e: type(e).__name__,
)
def test_connection_and_timeout_errors_of_every_server_are_outages(error: BaseException) -> None:
    assert is_outage(error)


def invalid_request() -> ValidationError:
    try:
        JobRequest(prompt="")
    except ValidationError as exc:
        return exc
    raise AssertionError("an empty prompt was accepted")


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad value"),
        KeyError("attempts"),
        invalid_request(),
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.InterfaceError("the number of query arguments cannot exceed 32767"),
        mongo_errors.DuplicateKeyError("E11000"),
        kafka_errors.MessageSizeTooLargeError(),
        FileNotFoundError(2, "No such file"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_bugs_and_bad_data_are_not_outages(error: BaseException) -> None:
    assert not is_outage(error)
