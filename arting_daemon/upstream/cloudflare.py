"""Recognising Cloudflare's pages where Arting's JSON should be.

The checks follow what is known of Cloudflare's pages (``arting_protocol.md`` §7):
every page comes with ``Server: cloudflare``; challenges carry ``cf-mitigated:
challenge`` or the "Just a moment..." markers; blocks carry an error code such as
1020 (firewall) or 1015 (rate limited); 52x pages mean Cloudflare could not reach
Arting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_CHALLENGE_MARKERS = ("_cf_chl_opt", "<title>Just a moment...</title>",
                      "/cdn-cgi/challenge-platform/", "challenge-form")
_ERROR_CODE = re.compile(r'class="cf-error-code">\s*(\d{3,4})\s*<')


def classify(status: int, headers: Mapping[str, str], text: str) -> str | None:
    """Return ``challenge``, ``firewall``, ``rate_limit``, ``origin_error`` or None."""
    server = headers.get("Server", headers.get("server", "")).lower()
    is_html = "html" in headers.get("Content-Type", headers.get("content-type", "")).lower()
    if not server.startswith("cloudflare") and not (is_html and "cloudflare" in text.lower()):
        return None
    if headers.get("cf-mitigated", "").lower() == "challenge" or any(
            marker in text for marker in _CHALLENGE_MARKERS):
        return "challenge"
    code = _ERROR_CODE.search(text)
    if code and code[1] == "1015" or status == 429:
        return "rate_limit"
    if code and code[1].startswith("10"):
        return "firewall"
    if status >= 520 or (code and code[1].startswith("5")):
        return "origin_error"
    return "firewall" if status == 403 else None


ADVICE = {
    "challenge": ("Cloudflare is showing a browser challenge instead of Arting's API. Open "
                  "arting.ai in a browser, pass the check, then copy the `cf_clearance` cookie "
                  "into `cf_clearance` (ARTING_CF_CLEARANCE) and that browser's exact "
                  "User-Agent into `user_agent` (ARTING_USER_AGENT)."),
    "firewall": ("Cloudflare blocked this machine's address (firewall rule, error 1020). "
                 "Try another network or proxy; a token change will not help."),
    "rate_limit": "Cloudflare is rate-limiting this address (error 1015); wait and retry.",
    "origin_error": "Cloudflare could not reach Arting's servers (5xx); Arting is down or "
                    "overloaded, retry later.",
}
