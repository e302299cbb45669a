"""What a user copies from the browser, read for an Arting token.

The original project's advice is to copy the ``Authorization`` header from the browser's
developer tools; users copy whatever is at hand. Recognised, in this order:

* a "Copy as cURL" command, for bash (``'…'`` quoting, ``\\`` line ends) or for cmd
  (``^"…^"`` quoting, ``^`` line ends);
* a "Copy request headers" block (``Name: value`` lines, HTTP/2's ``:authority:`` ones
  included);
* bare tokens, one a line (an ``Authorization:`` prefix is dropped).

From a command or a block come the token, the Cloudflare cookies (``cf_clearance``,
``__cf_bm``, ``_cfuvid``: the others are the site's own, not ours to replay) and the
User-Agent, which Cloudflare binds its clearance to.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from ...errors import InvalidRequest


@dataclass(frozen=True)
class Pasted:
    token: str = field(repr=False)
    cookies: dict[str, str] = field(default_factory=dict, repr=False)
    user_agent: str | None = None


def parse(text: str) -> list[Pasted]:
    """Every token ``text`` holds (at least one, or ``InvalidRequest`` saying why)."""
    text = text.strip()
    if re.match(r"curl(\.exe)?\s", text, re.IGNORECASE):
        found = [_headers(_curl_headers(text))]
    elif re.search(r"^\s*:?[A-Za-z][\w-]*:\s", text, re.MULTILINE) and not _bare(text):
        found = [_headers(_header_lines(text))]
    else:
        found = [Pasted(_token(line)) for line in text.splitlines() if line.strip()]
    found = [p for p in found if p.token]
    if not found:
        raise InvalidRequest("No Arting token found in what was pasted: copy a request to "
                             "api.arting.ai from the browser's developer tools (Network) "
                             "as cURL, or its request headers, or its `Authorization` "
                             "value alone.", param="paste")
    return found


def _bare(text: str) -> bool:
    """Only ``Authorization: x`` lines: tokens, each with its header's name."""
    return all(line.strip().lower().startswith("authorization:")
               for line in text.splitlines() if line.strip())


def _token(value: str) -> str:
    value = value.strip()
    if value.lower().startswith("authorization:"):
        value = value.split(":", 1)[1].strip()
    return value


def _curl_headers(text: str) -> list[tuple[str, str]]:
    """The headers (and ``-b`` cookies, as a Cookie header) of a cURL command."""
    if re.search(r"\^\s*\r?\n", text) or '^"' in text:        # cmd's quoting
        text = re.sub(r"\^\r?\n", " ", text)
        text = re.sub(r"\^(.)", r"\1", text)
    text = re.sub(r"\\\r?\n", " ", text)
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise InvalidRequest(f"The cURL command could not be read ({exc}); copy it again, "
                             "whole.", param="paste") from None
    headers = []
    for flag, value in zip(words, words[1:]):
        if flag in ("-H", "--header"):
            name, _, rest = value.partition(":")
            headers.append((name.strip(), rest.strip()))
        elif flag in ("-b", "--cookie"):
            headers.append(("cookie", value))
        elif flag in ("-A", "--user-agent"):
            headers.append(("user-agent", value))
    return headers


def _header_lines(text: str) -> list[tuple[str, str]]:
    headers = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(":"):            # :authority: … (HTTP/2 pseudo-headers)
            continue
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
    return headers


def _headers(headers: list[tuple[str, str]]) -> Pasted:
    token, agent, cookies = "", None, {}
    for name, value in headers:
        low = name.lower()
        if low == "authorization":
            token = value
        elif low == "user-agent":
            agent = value
        elif low == "cookie":
            for part in value.split(";"):
                key, _, val = part.strip().partition("=")
                if key.startswith(("cf_", "__cf", "_cfuvid")) and val:
                    cookies[key] = val
    return Pasted(token, cookies, agent)
