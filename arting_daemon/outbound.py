"""Where the daemon may send a request that is not a call to Arting's API: one policy.

Such requests go to URLs the daemon is given, not ones it knows: today the webhooks
clients and the operator name (``webhooks.py``). Before one is sent, and when the URL
is first accepted (so a bad ``webhook_url`` is a 400 at submit, not a silent failure):

* only ``http`` and ``https``;
* the host must be public: every address it resolves to must be global (no loopback,
  private, link-local, CGNAT, multicast, reserved or unspecified address), unless the
  host is allow-listed (``webhook_allow_hosts``; ``*.`` matches subdomains; an IP
  literal matches itself);
* the connection goes only to the addresses that passed the check (``resolver``): a
  name that resolves elsewhere by the time of the request (DNS rebinding) gets nowhere;
* redirects are never followed, the answer's body is never read, timeouts are short
  (the callers pass ``allow_redirects=False`` and their timeout).

Refusals are ``DestinationRefused`` (a 400 where a client gave the URL) saying what to
change. The hosts Arting names (result images, signed uploads) are to follow the same
policy (issue 20).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

from .errors import DestinationRefused

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def host_matches(host: str, patterns: list[str]) -> bool:
    """Whether ``host`` is one of ``patterns`` (``*.example.com``: its subdomains)."""
    host = host.lower().rstrip(".")
    return any(host == p or (p.startswith("*.") and host.endswith(p[1:]))
               for p in (p.lower() for p in patterns))


def is_public(address: Address) -> bool:
    """A global unicast address (an IPv4-mapped IPv6 address is judged as IPv4)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


class OutboundPolicy:
    def __init__(self, webhook_allow_hosts: list[str]) -> None:
        self.webhook_allow_hosts = list(webhook_allow_hosts)

    def allowed(self, host: str) -> bool:
        """Allow-listed: may be on a local or private address."""
        return host_matches(host, self.webhook_allow_hosts)

    async def check_webhook(self, url: str, param: str | None = None) -> None:
        """Raise ``DestinationRefused`` unless a webhook may be sent to ``url``."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or not host:
            raise DestinationRefused(f"A webhook URL must be an http:// or https:// URL "
                                     f"with a host; got {url[:80]!r}.", param=param)
        if self.allowed(host):
            return
        try:
            port = parts.port
        except ValueError:
            raise DestinationRefused("The webhook URL's port is not a number.",
                                     param=param) from None
        found = literal(host)
        addresses = [found] if found else await _resolve(host, port, param)
        private = next((a for a in addresses if not is_public(a)), None)
        if private is not None:
            raise DestinationRefused(
                f"Webhooks do not go to {host}: it is a loopback, private or link-local "
                f"address ({private}). If that receiver is yours, add {host} to "
                "webhook_allow_hosts.", param=param)

    def resolver(self) -> AbstractResolver:
        """For the webhook client's connector: only public addresses of hosts not
        allow-listed are ever connected to."""
        return _PolicyResolver(self)


async def _resolve(host: str, port: int | None, param: str | None) -> list[Address]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port or 443,
                                                             type=socket.SOCK_STREAM)
    except OSError:
        raise DestinationRefused(f"The webhook host {host} could not be resolved; check "
                                 "the URL.", param=param) from None
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


class _PolicyResolver(AbstractResolver):
    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._dns = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: int = socket.AF_INET) -> list[dict[str, Any]]:
        found = await self._dns.resolve(host, port, family)
        if self._policy.allowed(host):
            return found
        public = [entry for entry in found if is_public(ipaddress.ip_address(
            str(entry["host"]).split("%")[0]))]
        if not public:
            raise OSError(f"{host} resolves to no public address (webhook_allow_hosts)")
        return public

    async def close(self) -> None:
        await self._dns.close()
