"""Can this machine reach ``base_url`` at all: DNS, a TCP connection, a TLS handshake.

These come before any HTTP exchange, so a failure names the layer that failed (a
name that does not resolve, a port a firewall drops, a proxy that swaps the
certificate) instead of one "could not connect".
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from urllib.parse import urlsplit

from ..providers.arting.wire import tls_context
from ..transport import tunnel
from ..transport.proxies import Proxy
from .report import Report
from ..tasks import wait_for

#: Addresses tried in turn before giving up on TCP, as HTTP clients do.
MAX_ADDRESSES = 4


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


async def check_reach(base_url: str, timeout: float, report: Report,
                      topic: str = "reach") -> bool:
    """Add the ``reach`` finding (or ``topic``'s); False when the upstream cannot be
    reached (the rest is moot)."""
    parts = urlsplit(base_url)
    host, https = parts.hostname or "", parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    loop = asyncio.get_running_loop()

    started = time.monotonic()
    try:
        infos = await wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM),
                                       timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        why = "no answer from DNS" if isinstance(exc, asyncio.TimeoutError) else \
            (exc.strerror or str(exc))
        report.add(topic, "fail", f"{host} does not resolve ({why}): check this machine's "
                   "network and DNS, and `base_url`.", host=host)
        return False
    dns_ms = _ms(started)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))

    errors = []
    started = time.monotonic()
    for address in addresses[:MAX_ADDRESSES]:
        try:
            _, writer = await wait_for(asyncio.open_connection(address, port), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            errors.append(f"{address}: {_why(exc)}")
            continue
        writer.close()
        await _closed(writer)
        break
    else:
        report.add(topic, "fail", f"{host} resolves ({', '.join(addresses[:MAX_ADDRESSES])}), "
                   f"but nothing accepts a TCP connection on port {port} "
                   f"({'; '.join(errors)}): a firewall, or a proxy this network requires?",
                   host=host, addresses=addresses)
        return False
    tcp_ms = _ms(started)
    said = (f"{host} resolves to {_count(addresses)} ({addresses[0]}) in {dns_ms} ms; "
            f"TCP port {port} connects in {tcp_ms} ms")
    data = {"host": host, "addresses": addresses, "dns_ms": dns_ms, "tcp_ms": tcp_ms}
    if not https:
        report.add(topic, "ok", said + "; plain HTTP, no TLS.", **data)
        return True

    started = time.monotonic()
    try:
        _, writer = await wait_for(asyncio.open_connection(
            address, port, ssl=ssl.create_default_context(), server_hostname=host), timeout)
    except ssl.SSLCertVerificationError as exc:
        report.add(topic, "fail", f"{said}; but its TLS certificate is not trusted "
                   f"({exc.verify_message}). A proxy that intercepts TLS? Then its CA must be "
                   "trusted by this Python (SSL_CERT_FILE).", **data)
        return False
    except (OSError, asyncio.TimeoutError) as exc:
        report.add(topic, "fail", f"{said}; but the TLS handshake failed ({_why(exc)}).",
                   **data)
        return False
    tls = writer.get_extra_info("ssl_object")
    cert = writer.get_extra_info("peercert") or {}
    writer.close()
    await _closed(writer)
    version = tls.version() if tls else "?"
    expires = cert.get("notAfter")
    days = int((ssl.cert_time_to_seconds(expires) - time.time()) // 86400) if expires else None
    issuer = dict(pair[0] for pair in cert.get("issuer", ()) if pair)
    data.update(tls_ms=_ms(started), tls_version=version, certificate_days_left=days,
                certificate_issuer=issuer.get("organizationName") or issuer.get("commonName"))
    level = "warn" if days is not None and days < 7 else "ok"
    report.add(topic, level, f"{said}; {version} in {data['tls_ms']} ms, certificate valid "
               f"for {days} more days (issuer: {data['certificate_issuer'] or 'unknown'}).",
               **data)
    return True


class _Opened(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport


async def check_reach_via(proxy: Proxy, base_url: str, timeout: float,
                          report: Report, topic: str = "reach", name: str = "Arting") -> bool:
    """With a proxy: does it answer, take the credentials, and reach the upstream
    (``name``; for https, a TLS handshake with it through the proxy)? Adds the ``reach``
    finding (or ``topic``'s)."""
    parts = urlsplit(base_url)
    host, https = parts.hostname or "", parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    forward = not https and not proxy.socks
    started = time.monotonic()
    try:
        made = await tunnel.connect(_Opened, host, port,
                                    tls_context() if https else None, proxy,
                                    forward=forward, timeout=timeout)
    except tunnel.ProxyFailure as exc:
        advice = {"unreachable": "is it running, and is `proxy` (or HTTPS_PROXY) right?",
                  "refused": "correct `user:password` in the proxy's URL.",
                  "destination": f"the proxy is up and took the credentials, but {name} is "
                                 "out of its reach (or its rules forbid it)."}[exc.kind]
        said = exc.message[0].upper() + exc.message[1:]
        report.add(topic, "fail", f"{said}: {advice}", proxy=proxy.shown,
                   proxy_outcome=exc.kind)
        return False
    except (OSError, ssl.SSLError) as exc:
        report.add(topic, "fail", f"the proxy {proxy} connected to {host}:{port}, but the "
                   f"TLS handshake with it failed ({_why(exc)}).", proxy=proxy.shown,
                   proxy_outcome="tls")
        return False
    made.transport.close()  # type: ignore[attr-defined]
    said = "answered" if forward else f"took the credentials and reached {host}:{port}" \
        if proxy.username or proxy.password else f"reached {host}:{port}"
    report.add(topic, "ok", f"through the proxy {proxy} ({proxy.source}): it {said}"
               + (f", TLS with {name}" if https else "") + f" in {_ms(started)} ms.",
               proxy=proxy.shown, proxy_outcome="ok", host=host)
    return True


def _count(addresses: list[str]) -> str:
    return "1 address" if len(addresses) == 1 else f"{len(addresses)} addresses"


def _why(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


async def _closed(writer: asyncio.StreamWriter) -> None:
    try:
        await writer.wait_closed()
    except (OSError, ssl.SSLError):
        pass
