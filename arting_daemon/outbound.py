"""Where the daemon may send a request that is not a call to Arting's API: one policy.

Some requests go to URLs the daemon is given, not ones it knows, so each passes this
policy first:

* **Result downloads** (URLs in Arting's answers) go only to a host in ``image_hosts``
  (``*.`` matches subdomains) or Arting's own.
* **A signed PUT** (``docs/protocol/arting.md`` §11) goes to the host Arting named in that
  very answer — allowed for that one request, not remembered — if it is a trusted host
  as above, or resolves to public addresses only (a signed URL pointing into the local
  network is refused).
* **Webhooks** (``webhooks.py``: URLs clients and the operator name) go only to hosts
  whose every address is public, unless the host is in ``webhook_allow_hosts`` (an IP
  literal matches itself). The check is made when the URL is accepted (a bad
  ``webhook_url`` is a 400 at submit) and before each attempt, and the connection goes
  only to the addresses that passed (``resolver``): a name that resolves elsewhere by
  then (DNS rebinding) gets nowhere.

Public means global unicast: no loopback, private, link-local, CGNAT, multicast,
reserved or unspecified address. An IPv6 address that carries an IPv4 one — IPv4-mapped
(``::ffff:0:0/96``) or -translated (``::ffff:0:0:0/96``), IPv4-compatible (``::/96``),
NAT64 (``64:ff9b::/96``), 6to4 (``2002::/16``), Teredo (server and client) — is judged
by the IPv4 inside, as that is where a translator or relay takes the request; NAT64's
local-use prefix (``64:ff9b:1::/48``) is a local network's own, never public. Only
``http``/``https``; for Arting's URLs ``http`` only when Arting itself is spoken to over
http (the sandbox). Redirects are never followed (callers pass
``allow_redirects=False``). No URL a client sends is ever fetched: clients send image
bytes, never addresses; a webhook only receives a POST.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from .errors import ArtingError, BadUpstreamResponse, DestinationRefused, UpstreamUnreachable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def host_matches(host: str, patterns: list[str]) -> bool:
    """Whether ``host`` is one of ``patterns`` (``*.example.com``: its subdomains)."""
    host = host.lower().rstrip(".")
    return any(host == p or (p.startswith("*.") and host.endswith(p[1:]))
               for p in (p.lower() for p in patterns))


#: Prefixes whose last 32 bits are the IPv4 address reached: IPv4-mapped, -translated,
#: -compatible, NAT64's well-known prefix.
_LAST_32 = [ipaddress.ip_network(n) for n in ("::ffff:0:0/96", "::ffff:0:0:0/96", "::/96",
                                               "64:ff9b::/96")]
#: NAT64's local-use prefix: a translator a network keeps for itself, whose IPv4 address
#: sits where that network's prefix length puts it (RFC 6052), unknown here.
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def embedded(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address reaches through (none for a plain one)."""
    if any(address in net for net in _LAST_32):
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address.sixtofour is not None:
        return [address.sixtofour]
    return list(address.teredo or ())


def is_public(address: Address) -> bool:
    """A global unicast address; one carrying IPv4 addresses (``embedded``) is public
    when each of those is; none in NAT64's local-use prefix is."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL:
            return False
        inside = embedded(address)
        if inside:
            return all(is_public(v4) for v4 in inside)
    return address.is_global and not address.is_multicast


class OutboundPolicy:
    def __init__(self, image_hosts: Sequence[str] = (), upstream_url: str = "", *,
                 webhook_allow_hosts: Sequence[str] = ()) -> None:
        upstream = urlsplit(upstream_url)
        self.upstream_host = (upstream.hostname or "").lower()
        self._plain_http = upstream.scheme == "http"
        self._hosts = [h.lower() for h in image_hosts] + \
            ([self.upstream_host] if self.upstream_host else [])
        self.webhook_allow_hosts = list(webhook_allow_hosts)

    # --- Arting's URLs -----------------------------------------------------------------

    def trusted(self, host: str) -> bool:
        return host_matches(host, self._hosts)

    def check_download(self, url: str) -> None:
        """Raise unless a result image may be fetched from ``url``."""
        host = (urlsplit(url).hostname or "").lower()
        if not self.trusted(host):
            raise _refused(
                f"Arting returned an image on host {host!r}, which is not in `image_hosts`; "
                "add it there if you trust it.")

    async def check_signed_put(self, url: str) -> None:
        """Raise unless the init image may be PUT to this signed URL from Arting."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        schemes = ("https", "http") if self._plain_http else ("https",)
        if parts.scheme not in schemes or not host:
            raise _refused(
                f"Arting's signed upload URL is not an {' or '.join(schemes)} URL "
                f"({parts.scheme or 'no scheme'}://{host}); the image was not sent.")
        if self.trusted(host):
            return
        private = await _private(host, parts.port, lambda: UpstreamUnreachable(
            f"Arting's signed upload host {host!r} could not be resolved; check the "
            "network."))
        if private:
            raise _refused(
                f"Arting's signed upload URL points at {host!r}, which is a private or local "
                f"address ({private}); the image was not sent there. If that storage is "
                "really yours, add the host to `image_hosts`.")

    # --- webhooks ----------------------------------------------------------------------

    def webhook_allowed(self, host: str) -> bool:
        """Allow-listed for webhooks: may be on a local or private address."""
        return host_matches(host, self.webhook_allow_hosts)

    async def check_webhook(self, url: str, param: str | None = None) -> None:
        """Raise ``DestinationRefused`` unless a webhook may be sent to ``url``."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or not host:
            raise DestinationRefused(f"A webhook URL must be an http:// or https:// URL "
                                     f"with a host; got {url[:80]!r}.", param=param)
        if self.webhook_allowed(host):
            return
        try:
            port = parts.port
        except ValueError:
            raise DestinationRefused("The webhook URL's port is not a number.",
                                     param=param) from None
        private = await _private(host, port, lambda: DestinationRefused(
            f"The webhook host {host} could not be resolved; check the URL.", param=param))
        if private:
            raise DestinationRefused(
                f"Webhooks do not go to {host}: it is a loopback, private or link-local "
                f"address ({private}). If that receiver is yours, add {host} to "
                "webhook_allow_hosts.", param=param)

    def resolver(self) -> AbstractResolver:
        """For the webhook client's connector: only public addresses of hosts not
        allow-listed are ever connected to."""
        return _WebhookResolver(self)


def _refused(message: str) -> BadUpstreamResponse:
    """A URL from Arting the policy will not follow: asking again does not change that."""
    return BadUpstreamResponse(message, retryable=False)


async def _private(host: str, port: int | None,
                   unresolved: Callable[[], ArtingError]) -> Address | None:
    """The first address ``host`` names (an IP literal is its own) that is not public."""
    try:
        addresses = [ipaddress.ip_address(host.strip("[]").split("%")[0])]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port or 443,
                                                                 type=socket.SOCK_STREAM)
        except OSError:
            raise unresolved() from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    return next((a for a in addresses if not is_public(a)), None)


class _WebhookResolver(AbstractResolver):
    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._dns = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._dns.resolve(host, port, family)
        if self._policy.webhook_allowed(host):
            return found
        public = [entry for entry in found if is_public(ipaddress.ip_address(
            str(entry["host"]).split("%")[0]))]
        if not public:
            raise OSError(f"{host} resolves to no public address (webhook_allow_hosts)")
        return public

    async def close(self) -> None:
        await self._dns.close()
