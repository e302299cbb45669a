"""Which proxy a request goes through: the ``proxy`` setting, else the environment's
variables, read as curl and requests read them.

* ``proxy`` (a ``[[providers]]`` entry may have its own) is one URL for every request:
  ``http://`` (a plain proxy), ``https://`` (TLS to the proxy), ``socks5://`` (the
  daemon resolves the destination's name) or ``socks5h://`` (the proxy does), each
  with ``user:password@`` if the proxy wants them. ``direct`` means no proxy, whatever
  the environment says.
* Without it: ``https_proxy`` / ``HTTPS_PROXY`` for https URLs, ``http_proxy`` /
  ``HTTP_PROXY`` for http ones, else ``all_proxy`` / ``ALL_PROXY`` (the lower-case name
  first; ``HTTP_PROXY`` is ignored under CGI, where a request header could set it).
  A value without a scheme is an http proxy.
* ``no_proxy`` (else ``no_proxy`` / ``NO_PROXY``) names destinations that go direct
  either way: ``*`` (all), a host and its subdomains (``example.com`` or
  ``.example.com``), an IP address or network (``10.0.0.0/8``), each optionally with
  ``:port``.

A proxy is shown masked (``http://***@proxy:3128``): its credentials never reach a log
line, an error, a metric, a job record or the status.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from .. import logs

SCHEMES = ("http", "https", "socks5", "socks5h")
DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}
DIRECT = "direct"


@dataclass(frozen=True)
class Proxy:
    """One proxy: where it is, how to speak to it, and (never shown) its credentials."""

    scheme: str
    host: str
    port: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    #: Where it was set: ``proxy``, ``HTTPS_PROXY`` …
    source: str = field(default="proxy", compare=False)

    @property
    def socks(self) -> bool:
        return self.scheme.startswith("socks")

    @property
    def shown(self) -> str:
        """The URL with its credentials masked: what logs and errors say."""
        credentials = f"{logs.MASK}@" if self.username or self.password else ""
        return f"{self.scheme}://{credentials}{netloc(self.host, self.port)}"

    def __str__(self) -> str:
        return self.shown

    @property
    def url(self) -> str:
        """The full URL, credentials percent-encoded: only for a client library."""
        credentials = ""
        if self.username is not None or self.password is not None:
            credentials = quote(self.username or "", safe="")
            if self.password is not None:
                credentials += ":" + quote(self.password, safe="")
            credentials += "@"
        return f"{self.scheme}://{credentials}{netloc(self.host, self.port)}"

    def authorization(self) -> str | None:
        """``Proxy-Authorization`` for an http(s) proxy (Basic), or None."""
        if self.username is None and self.password is None:
            return None
        pair = f"{self.username or ''}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    def secrets(self) -> list[str]:
        """Every form the credentials can take in text, for the log redactor."""
        if self.username is None and self.password is None:
            return []
        found = [self.url.split("://", 1)[1].rsplit("@", 1)[0], self.password or "",
                 quote(self.password or "", safe=""), (self.authorization() or " ").split()[1]]
        return [s for s in found if s]


def parse(text: str, source: str = "proxy") -> Proxy | None:
    """A proxy URL as the settings and the environment write it; ``direct`` is None.
    Raises ``ValueError`` saying what is wrong (never repeating the credentials)."""
    text = text.strip()
    if text.lower() == DIRECT:
        return None
    if "://" not in text:
        text = "http://" + text        # as curl and requests read a bare host:port
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"a proxy URL must start with {', '.join(s + '://' for s in SCHEMES)} "
                         f"(or be `{DIRECT}`); got {scheme}://")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the proxy URL's port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("the proxy URL has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("a proxy URL is scheme://[user:password@]host:port, with no path")
    return Proxy(scheme, parts.hostname, port or DEFAULT_PORTS[scheme],
                 unquote(parts.username) if parts.username is not None else None,
                 unquote(parts.password) if parts.password is not None else None, source)


def netloc(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- which proxy a URL goes through -------------------------------------------------------

#: The environment's names, in the order they are read, per destination scheme.
ENV_NAMES = {"https": ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"),
             "http": ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")}
NO_PROXY_NAMES = ("no_proxy", "NO_PROXY")


class Bypass:
    """The ``no_proxy`` list: destinations that go direct."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.entries = [e.strip() for e in entries if e.strip()]
        self._all = "*" in self.entries
        self._names: list[tuple[str, int | None]] = []
        self._networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                   int | None]] = []
        for entry in self.entries:
            host, port = _split_port(entry)
            try:
                self._networks.append((ipaddress.ip_network(host.strip("[]"), strict=False),
                                       port))
            except ValueError:
                self._names.append((host.lower().lstrip("*").lstrip(".").rstrip("."), port))

    def __bool__(self) -> bool:
        return bool(self.entries)

    def matches(self, host: str, port: int) -> bool:
        if self._all:
            return True
        host = host.lower().strip("[]").rstrip(".")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None:
            return any(address in net and p in (None, port) for net, p in self._networks)
        return any((host == name or host.endswith("." + name)) and p in (None, port)
                   for name, p in self._names if name)


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host:port`` → (host, port); an IPv6 address or network keeps its colons."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


class ProxyPlan:
    """For every URL the daemon fetches, the proxy it goes through (or None: direct)."""

    def __init__(self, by_scheme: Mapping[str, Proxy | None], bypass: Bypass,
                 direct: Iterable[str] = ()) -> None:
        self.by_scheme = dict(by_scheme)
        self.bypass = bypass
        #: ``host:port`` pairs always reached directly (the in-process emulator).
        self.direct = {d.lower() for d in direct}

    @classmethod
    def of(cls, proxy: str | None, no_proxy: list[str], environ: Mapping[str, str],
           direct: Iterable[str] = ()) -> ProxyPlan:
        """From the ``proxy`` setting if set, else the environment; ``no_proxy`` if set,
        else the environment's."""
        bypass = Bypass(no_proxy or _no_proxy_env(environ))
        if proxy is not None:
            chosen = parse(proxy, "proxy")
            return cls({"http": chosen, "https": chosen}, bypass, direct)
        return cls({scheme: _from_env(environ, names) for scheme, names in ENV_NAMES.items()},
                   bypass, direct)

    def replaced(self, proxy: str | None) -> ProxyPlan:
        """The plan with a provider's own ``proxy`` (unset: this one as it is)."""
        if proxy is None:
            return self
        chosen = parse(proxy, "proxy of the provider")
        return ProxyPlan({"http": chosen, "https": chosen}, self.bypass, self.direct)

    def for_url(self, url: str) -> Proxy | None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        proxy = self.by_scheme.get(scheme)
        if proxy is None or not parts.hostname:
            return None
        port = parts.port or (443 if scheme == "https" else 80)
        if f"{netloc(parts.hostname, port)}".lower() in self.direct \
                or self.bypass.matches(parts.hostname, port):
            return None
        return proxy

    @property
    def proxies(self) -> list[Proxy]:
        return list(dict.fromkeys(p for p in self.by_scheme.values() if p is not None))

    def secrets(self) -> list[str]:
        return [s for p in self.proxies for s in p.secrets()]

    def describe(self) -> str | None:
        """What the start-up log says (credentials masked), or None with no proxy."""
        proxies = self.proxies
        if not proxies:
            return None
        if len(proxies) == 1 and all(p is not None for p in self.by_scheme.values()):
            said = f"{proxies[0]} (from {proxies[0].source})"
        else:
            said = ", ".join(f"{scheme} URLs through {p} (from {p.source})"
                             for scheme, p in self.by_scheme.items() if p is not None)
        if self.bypass:
            said += f"; direct for {', '.join(self.bypass.entries)} (no_proxy)"
        return said


def _from_env(environ: Mapping[str, str], names: tuple[str, ...]) -> Proxy | None:
    cgi = "REQUEST_METHOD" in environ
    for name in names:
        if name == "HTTP_PROXY" and cgi:
            continue
        value = environ.get(name, "").strip()
        if value:
            try:
                return parse(value, name)
            except ValueError as exc:
                raise ValueError(f"the environment variable {name}: {exc}") from None
    return None


def _no_proxy_env(environ: Mapping[str, str]) -> list[str]:
    for name in NO_PROXY_NAMES:
        value = environ.get(name, "")
        if value.strip():
            return [part for part in value.replace(" ", ",").split(",") if part]
    return []
