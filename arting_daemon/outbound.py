"""Where the daemon may send a request that is not a call to Arting's API.

Arting answers with URLs the daemon then uses: result images to download, and the
signed URL an init image is PUT to (``arting_protocol.md`` §11). Those hosts are not
ours to choose, so each such request passes this one policy first:

* **downloads** go only to a host in ``image_hosts`` (``*.`` matches subdomains) or
  Arting's own;
* a **signed PUT** goes to the host Arting named in that very answer — allowed for that
  one request, not remembered — if it is a trusted host as above, or resolves to public
  addresses only (a signed URL pointing into the local network is refused);
* only ``http``/``https``, and ``http`` only when Arting itself is spoken to over http
  (the sandbox); redirects are never followed (the caller passes ``allow_redirects=False``).

No URL a client sends is ever fetched: clients send image bytes, never addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from .errors import BadUpstreamResponse, UpstreamUnreachable


class OutboundPolicy:
    def __init__(self, image_hosts: list[str], upstream_url: str) -> None:
        upstream = urlsplit(upstream_url)
        self.upstream_host = (upstream.hostname or "").lower()
        self._plain_http = upstream.scheme == "http"
        self._hosts = [h.lower() for h in image_hosts] + [self.upstream_host]

    def trusted(self, host: str) -> bool:
        host = host.lower()
        return any(host == p or (p.startswith("*.") and host.endswith(p[1:]))
                   for p in self._hosts)

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
        private = [a for a in await _addresses(host, parts.port) if not a.is_global]
        if private:
            raise _refused(
                f"Arting's signed upload URL points at {host!r}, which is a private or local "
                f"address ({private[0]}); the image was not sent there. If that storage is "
                "really yours, add the host to `image_hosts`.")


def _refused(message: str) -> BadUpstreamResponse:
    """A URL from Arting the policy will not follow: asking again does not change that."""
    return BadUpstreamResponse(message, retryable=False)


async def _addresses(host: str, port: int | None) -> list[ipaddress.IPv4Address |
                                                         ipaddress.IPv6Address]:
    """Every address ``host`` names (an IP literal is its own)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port or 443,
                                                             type=socket.SOCK_STREAM)
    except OSError:
        raise UpstreamUnreachable(f"Arting's signed upload host {host!r} could not be "
                                  "resolved; check the network.") from None
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
