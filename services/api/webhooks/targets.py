"""Where a webhook may send: never to private, loopback, link-local (or otherwise
non-global) addresses unless the operator allows them (`WEBHOOKS_ALLOW_PRIVATE`), checked
when a webhook is written and again right before each connection (a name may resolve
elsewhere later)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


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


async def check(url: str, *, allow_private: bool) -> None:
    """Raise `TargetRefused` when the URL's host is, or resolves to, a non-global address."""
    if allow_private:
        return
    host = urlsplit(url).hostname or ""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as error:
            raise TargetRefused(f"its host '{host}' does not resolve ({error})") from None
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        if not address.is_global:
            raise TargetRefused(
                f"its host resolves to {address}, a private, loopback or link-local address (refused unless the "
                "operator sets WEBHOOKS_ALLOW_PRIVATE)"
            )
