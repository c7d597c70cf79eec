"""Where a webhook may send: never to private, loopback, link-local (or otherwise
non-global) addresses unless the operator allows them (`WEBHOOKS_ALLOW_PRIVATE`). Checked
when a webhook is written, and again at each connection the dispatcher opens: there the
name is resolved once, every address checked, and the connection made to a checked address
only, so a name rebound between the check and the connection cannot lead elsewhere."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from urllib.parse import urlsplit

import anyio
import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx's defaults


class TargetRefused(ValueError):
    """The URL names a target the service does not send to."""


def url_error(url: str) -> str | None:
    """Why a URL cannot be a webhook's, by its shape alone, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        return "must be an http(s) URL"
    if not parts.hostname:
        return "must name a host"
    if parts.username or parts.password:
        return "must not carry credentials"
    return None


async def resolve(host: str) -> list[IPAddress]:
    """The host's addresses, in the resolver's order: the host itself when it is an address.
    The one lookup both the check and the connection use (tests replace it)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as error:
        raise TargetRefused(f"its host '{host}' does not resolve ({error})") from None
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


async def allowed_addresses(host: str) -> list[IPAddress]:
    """The host's addresses, resolved once, when every one is global; else `TargetRefused`."""
    addresses = await resolve(host)
    for address in addresses:
        if not address.is_global:
            raise TargetRefused(
                f"its host resolves to {address}, a private, loopback or link-local address (refused unless the "
                "operator sets WEBHOOKS_ALLOW_PRIVATE)"
            )
    return addresses


async def check(url: str, *, allow_private: bool) -> None:
    """Raise `TargetRefused` when the URL's host is, or resolves to, a non-global address."""
    if not allow_private:
        await allowed_addresses(urlsplit(url).hostname or "")


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's sockets, opened only to checked addresses: `connect_tcp` resolves the name
    once, checks every address, then tries each in the resolver's order (as
    `socket.create_connection` does), passing the address on, never the name, so nothing
    below resolves it again. TLS is started by httpcore afterwards with the URL's host, so SNI
    and certificate verification are for the name; the Host header comes from the URL."""

    def __init__(self, network: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._network = network or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):  # the connect timeout covers the lookup, as it does in httpcore
                addresses = await allowed_addresses(host)
        except TimeoutError as error:
            raise httpcore.ConnectTimeout(f"resolving '{host}' timed out") from error
        failed: Exception | None = None
        for address in addresses:
            try:
                return await self._network.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failed = error
        assert failed is not None  # a lookup answers at least one address
        raise failed

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetRefused("webhooks are sent over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._network.sleep(seconds)


def delivery_client(
    *,
    allow_private: bool,
    timeout: float,
    network: httpcore.AsyncNetworkBackend | None = None,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """The dispatcher's client; never follows redirects (a redirect's target would be a new,
    unchecked request). With `allow_private` nothing is refused: httpx's own client, as it
    always was. Otherwise every connection goes through `PinnedBackend`, and proxies named
    in the environment are not used (a proxy resolves the name itself: the address it
    reaches could not be the one checked). `network` and `verify` replace the sockets and the
    trusted certificates (tests)."""
    if allow_private:
        return httpx.AsyncClient(timeout=timeout, follow_redirects=False)
    transport = httpx.AsyncHTTPTransport(verify=verify)
    # httpx builds its httpcore pool with no way to pass a network backend: the pool is
    # replaced by the same pool (httpx's default settings) over PinnedBackend.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify),
        max_connections=LIMITS.max_connections,
        max_keepalive_connections=LIMITS.max_keepalive_connections,
        keepalive_expiry=LIMITS.keepalive_expiry,
        network_backend=PinnedBackend(network),
    )
    return httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False)
