"""Which exceptions mean "a server we depend on is unreachable or too slow right now".

An outage of the job store (asyncpg, PyMongo), the broker (aiokafka) or the object store
(minio over urllib3) says nothing about the message being handled: the same message succeeds
once the server is back. `shared.messaging.consume` therefore retries such a message for as
long as the outage lasts (capped backoff, the partition waits and its lag grows) and never
dead-letters it. Anything not listed here that keeps failing is treated as a poison message.

The test is on the whole chain (`__cause__`, `__context__`): adapters that translate an error
(`DependencyUnavailable` from a driver's error) keep it recognisable.
"""

from __future__ import annotations

import errno
import socket

import asyncpg
import urllib3.exceptions
from aiokafka import errors as kafka_errors
from pymongo import errors as mongo_errors

from shared.errors import DependencyUnavailable

# Connection-level failures of the operating system (refused, reset, unreachable, timed out).
_SOCKET_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.ETIMEDOUT,
    errno.EPIPE,
}

_OUTAGE_TYPES: tuple[type[BaseException], ...] = (
    DependencyUnavailable,
    ConnectionError,
    TimeoutError,  # asyncio.TimeoutError is the same class on 3.11
    socket.gaierror,
    # PostgreSQL: SQLSTATE class 08 (connection exception), server shutting down or starting
    # (57P01-57P03), too many connections (53300), and the client side of a lost connection.
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.exceptions.ConnectionFailureError,
    # MongoDB: AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError, WaitQueueTimeoutError.
    mongo_errors.ConnectionFailure,
    mongo_errors.ExecutionTimeout,
    # Kafka: no connection, request or metadata timeouts.
    kafka_errors.KafkaConnectionError,
    kafka_errors.KafkaTimeoutError,
    kafka_errors.NodeNotReadyError,
    kafka_errors.RequestTimedOutError,
    # S3 over urllib3: connection refused/reset, timeouts, retries exhausted.
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.MaxRetryError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.TimeoutError,
)

# asyncpg raises InterfaceError (not a PostgresError) when it uses a connection the server
# closed; these are the messages it uses for that, not for a misuse of the API.
_ASYNCPG_LOST_CONNECTION = ("connection is closed", "connection was closed", "pool is closing")


def is_outage(exc: BaseException) -> bool:
    """True when `exc`, or an exception it was raised from, is a dependency outage."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_outage_itself(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_outage_itself(exc: BaseException) -> bool:
    if isinstance(exc, _OUTAGE_TYPES):
        return True
    if isinstance(exc, kafka_errors.KafkaError) and exc.retriable:
        return True  # NotLeaderForPartition, LeaderNotAvailable, ... : the cluster is moving
    if isinstance(exc, mongo_errors.PyMongoError) and exc.has_error_label("RetryableWriteError"):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        return any(text in str(exc) for text in _ASYNCPG_LOST_CONNECTION)
    # asyncio's create_connection: OSError(errno, "Connect call failed ...") or, with several
    # addresses, a plain OSError("Multiple exceptions: ...") with no errno.
    if type(exc) is OSError:
        return exc.errno in _SOCKET_ERRNOS or str(exc).startswith("Multiple exceptions")
    return False
