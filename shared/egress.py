"""The egress guard: where a URL that a tenant or a provider response chose may send us.

Two checks, both needed:

* `url_problem` (static, no I/O): scheme http/https, no userinfo, no internal host name
  (`localhost`, `*.internal`, `*.local`, single-label names), and a host written as an IP
  address (in any spelling the C resolver accepts: `2130706433`, `0x7f.1`, `0177.0.0.1`,
  `127.1`, `[::ffff:127.0.0.1]`, a trailing dot) must be a public address. Intake runs it on
  `callback_url`, so a refusal is a 422 (or a DLQ record) that names the reason.
* `GuardedBackend` (at connect time): the httpcore network backend resolves the host once,
  refuses the connection if any address is not public, and connects to the vetted address
  itself. Host header, SNI and certificate checks keep the name, and there is no second
  lookup a DNS-rebinding server could answer differently.

Not public means loopback, private, link-local (cloud metadata at 169.254.169.254),
multicast, unspecified, reserved or otherwise not globally routable, including IPv4 addresses
embedded in IPv6 (IPv4-mapped, 6to4, NAT64). `EGRESS_ALLOW` (CIDRs) lifts the refusal for
local development only; production mode refuses to start with it (`egress_problems_for_production`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

if TYPE_CHECKING:
    from shared.settings import EgressSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

SCHEMES = ("http", "https")
_NUMERIC_V4 = re.compile(r"^[0-9a-fx.]+$", re.IGNORECASE)
_LOCALHOST = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".lan")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class EgressRefused(Exception):
    """An outbound request to a non-public address (or a malformed URL) was refused."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_allow(text: str) -> tuple[IPNetwork, ...]:
    """`EGRESS_ALLOW`: comma-separated CIDRs (a bare address means just that address)."""
    try:
        return tuple(
            ipaddress.ip_network(part.strip(), strict=False)
            for part in text.split(",")
            if part.strip()
        )
    except ValueError as exc:
        raise ValueError(f"EGRESS_ALLOW: {exc}") from exc


def literal_address(host: str) -> IPAddress | None:
    """The address a host names by itself (no lookup), in any spelling; None for a name."""
    host = host.strip("[]").rstrip(".")
    if "%" in host:  # an IPv6 zone id: only meaningful for link-local addresses
        host = host.split("%", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_V4.match(host) and any(c.isdigit() for c in host):
        try:  # the legacy forms inet_aton (and so getaddrinfo) accepts: 127.1, 0x7f.1, 2130706433
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _kind(ip: IPAddress) -> str | None:
    """What makes an address unfit for egress, or None when it is public."""
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local (where cloud metadata services live)"),
        (ip.is_multicast, "multicast"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "not globally routable"),
    )
    return next((kind for bad, kind in checks if bad), None)


def address_problem(ip: IPAddress, allow: Sequence[IPNetwork] = ()) -> str | None:
    """Why `ip` may not be connected to, or None. The allow-list is checked first."""
    inner = _embedded_v4(ip)
    if any(ip in net or (inner is not None and inner in net) for net in allow):
        return None
    if inner is not None:
        problem = _kind(inner)
        if problem is not None:
            return f"{ip} embeds {inner}, which is {problem}"
    problem = _kind(ip)
    return None if problem is None else f"{ip} is {problem}"


def _name_problem(host: str, allow: Sequence[IPNetwork]) -> str | None:
    name = host.rstrip(".").lower()
    if name in _LOCALHOST or name.endswith(".localhost"):
        if address_problem(ipaddress.IPv4Address("127.0.0.1"), allow) is None:
            return None
        return f"host {host!r} names this machine (loopback)"
    if name.endswith(_INTERNAL_SUFFIXES):
        return f"host {host!r} is an internal name"
    if "." not in name:
        return f"host {host!r} is a single-label (internal) name"
    return None


def url_problem(url: str, allow: Sequence[IPNetwork] = ()) -> str | None:
    """Why a URL may not be a request target, without any lookup; None when it may."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        return f"not a valid URL: {exc}"
    if parsed.scheme not in SCHEMES:
        return f"scheme {parsed.scheme!r} is not http or https"
    if parsed.userinfo:
        return "credentials in the URL (user:password@) are not allowed"
    host = parsed.host
    if not host:
        return "the URL has no host"
    ip = literal_address(host)
    if ip is None:
        return _name_problem(host, allow)
    return address_problem(ip, allow)


def check_url(url: str, allow: Sequence[IPNetwork] = (), what: str = "URL") -> None:
    problem = url_problem(url, allow)
    if problem is not None:
        raise EgressRefused(f"{what} refused: {problem}")


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host` (one lookup)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class EgressGuard:
    """The policy plus the resolver (a stub in tests: no lookup leaves the machine)."""

    allow: tuple[IPNetwork, ...] = ()
    resolver: Resolver = field(default=system_resolver)

    async def vet(self, host: str, port: int) -> list[str]:
        """The addresses to connect to; raises EgressRefused if any answer is not public
        (a mixed answer is refused whole: the client would pick among them)."""
        ip = literal_address(host)
        if ip is not None:
            addresses = [ip]
        else:
            try:
                answers = await self.resolver(host.rstrip("."), port)
            except OSError as exc:  # a lookup failure is transient, not a refusal
                raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in answers]
        if not addresses:
            raise httpcore.ConnectError(f"{host!r} resolves to no address")
        for address in addresses:
            problem = address_problem(address, self.allow)
            if problem is not None:
                raise EgressRefused(f"connection to {host!r} refused: {problem}")
        return [str(a) for a in addresses]


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to vetted addresses: resolve once, check, connect to that address."""

    def __init__(self, guard: EgressGuard, inner: httpcore.AsyncNetworkBackend | None = None):
        self.guard = guard
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        async with asyncio.timeout(timeout):
            addresses = await self.guard.vet(host, port)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("unix sockets are not an egress target")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def guarded_transport(
    guard: EgressGuard,
    *,
    limits: httpx.Limits | None = None,
    inner: httpcore.AsyncNetworkBackend | None = None,
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection goes through `GuardedBackend`. A client given
    a transport ignores HTTP(S)_PROXY from the environment, so nothing bypasses the guard."""
    limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
    transport = httpx.AsyncHTTPTransport(limits=limits)
    # httpx offers no network_backend argument; its pool is the documented httpcore one.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedBackend(guard, inner),
    )
    return transport


def egress_problems_for_production(settings: EgressSettings) -> list[str]:
    """What production mode must refuse: any allow-list entry (it is for local development)."""
    if not settings.egress_allow.strip():
        return []
    return [
        f"EGRESS_ALLOW={settings.egress_allow} lets webhooks and result downloads reach "
        "non-public addresses (local development only; unset it)"
    ]
