"""Cloudflare pages that can stand where Arting's JSON should be (§7, §9.11).

What matters is what clients key on, not pixel fidelity. cloudscraper (1.2.71 on
PyPI, and the newer ``cloudflare_v2`` code on GitHub) only reacts to a page whose
``Server`` header starts with ``cloudflare`` and whose body carries its regex
markers, so:

* ``managed_challenge(orchestrate=False)`` is the modern "Just a moment..." page
  with ``window._cf_chl_opt`` but no ``cpo.src = '.../orchestrate/jsch/v1'`` line
  and no ``challenge-form``: cloudscraper does not recognise it and hands the raw
  403 to its caller.
* ``managed_challenge(orchestrate=True)`` adds the ``orchestrate/jsch/v1`` line, the
  ``/cdn-cgi/images/trace/jsch/`` beacon, a ``challenge-form`` posting to
  ``/cdn-cgi/...?__cf_chl_f_tk=`` and an ``r`` token: both cloudscraper versions
  detect it (1.2.71 raises ``CloudflareChallengeError`` at once; the GitHub version
  sleeps 1-5 s, posts the form, gets 403 and raises ``CloudflareChallengeError``).
* ``not_a_browser`` is what a zone that checks fingerprints looks at, as far as an
  HTTP/1.1 server on loopback can tell (no TLS here, so no JA3/JA4): a browser sends
  ``sec-fetch-mode`` and ``accept-language``; a Chromium's ``User-Agent`` comes with
  ``sec-ch-ua`` naming the same major version, before it; its own headers' names are
  lower-case, as HTTP/2 writes them; and it offers HTTP/2 (over cleartext, the ``h2c``
  upgrade). curl_cffi impersonating Chrome passes; Python's clients and cloudscraper do
  not.
* ``error_page(1020)`` carries ``<span class="cf-error-code">1020</span>``, which
  cloudscraper turns into ``CloudflareCode1020``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re

from aiohttp import web

AIRPORTS = ("FRA", "AMS", "LHR", "CDG", "SJC", "IAD", "HKG", "SIN", "NRT", "SYD")

ORIGIN_ERRORS = {
    520: "Web server is returning an unknown error",
    521: "Web server is down",
    522: "Connection timed out",
    523: "Origin is unreachable",
    524: "A timeout occurred",
    525: "SSL handshake failed",
    526: "Invalid SSL certificate",
}

_NO_STORE = "private, max-age=0, no-store, no-cache, must-revalidate, post-check=0, pre-check=0"


def ray_id(rng: random.Random) -> str:
    """A ``cf-ray`` value: 16 hex digits, a dash, the answering data centre."""
    return f"{rng.getrandbits(64):016x}-{rng.choice(AIRPORTS)}"


def headers(ray: str, challenge: bool = False) -> dict[str, str]:
    """The headers Cloudflare puts on its own HTML pages."""
    out = {
        "Server": "cloudflare",
        "cf-ray": ray,
        "Content-Type": "text/html; charset=UTF-8",
        "Cache-Control": _NO_STORE,
        "Expires": "Thu, 01 Jan 1970 00:00:01 GMT",
        "X-Frame-Options": "SAMEORIGIN",
        "Referrer-Policy": "same-origin",
    }
    if challenge:
        out["cf-mitigated"] = "challenge"
    return out


_CHROMIUM = re.compile(r"Chrom(?:e|ium)/(\d+)")
_BRAND = re.compile(r'"(?:Google Chrome|Chromium|Microsoft Edge)";v="(\d+)"')


def not_a_browser(request: web.Request) -> str | None:
    """Why this request is not a browser's (None: it could be one)."""
    names = [name.decode("latin-1") for name, _ in request.raw_headers]
    lowered = [name.lower() for name in names]
    agent = request.headers.get("User-Agent", "")
    if not agent.startswith("Mozilla/5.0"):
        return "its User-Agent is not a browser's"
    for header in ("sec-fetch-mode", "accept-language"):
        if header not in lowered:
            return f"no {header} header, which every browser sends"
    if "user-agent" not in names:
        return "its header names are not lower-case, as a browser's HTTP/2 writes them"
    chromium = _CHROMIUM.search(agent)
    if chromium:
        brand = _BRAND.search(request.headers.get("sec-ch-ua", ""))
        if brand is None or brand[1] != chromium[1]:
            return "its sec-ch-ua does not name the Chrome its User-Agent says"
        if lowered.index("sec-ch-ua") > lowered.index("user-agent"):
            return "its headers are not in Chrome's order"
    if "h2c" not in request.headers.get("Upgrade", "").lower() and request.version < (2, 0):
        return "it does not offer HTTP/2"
    return None


def managed_challenge(host: str, ray: str, orchestrate: bool = False) -> str:
    """The interstitial "Just a moment..." page; see the module docstring for the variants."""
    token = hashlib.sha256(ray.encode()).hexdigest()
    ray_hex = ray.split("-")[0]
    options = json.dumps({
        "cvId": "3", "cZone": host, "cType": "managed", "cRay": ray_hex,
        "cH": token[:43], "cUPMDTk": f"/?__cf_chl_tk={token[:40]}", "cFPWv": "b",
        "cITimeS": "1761000000", "md": token[::-1],
    })
    solver = ""
    if orchestrate:
        solver = f"""
<form class="challenge-form" id="challenge-form" action="/cdn-cgi/challenge-platform/h/b/jsch/v1?__cf_chl_f_tk={token[:40]}" method="POST" enctype="application/x-www-form-urlencoded">
<input type="hidden" name="r" value="{token[20:60]}"/>
<input type="hidden" name="md" value="{token[::-1]}"/>
</form>
<noscript><img src="/cdn-cgi/images/trace/jsch/nojs/transparent.gif?ray={ray_hex}" alt=""/></noscript>"""
    loader = (f"cpo.src = '/cdn-cgi/challenge-platform/h/b/orchestrate/jsch/v1?ray={ray_hex}';"
              if orchestrate else "")
    return f"""<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">
<meta http-equiv="X-UA-Compatible" content="IE=Edge">
<meta name="robots" content="noindex,nofollow">
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>*{{box-sizing:border-box;margin:0;padding:0}}html{{line-height:1.15;color:#313131;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}}.main-content{{margin:8rem auto;max-width:60rem;padding-left:1.5rem}}</style>
</head><body><div class="main-wrapper" role="main"><div class="main-content">
<h1 class="zone-name-title h1">{host}</h1>
<h2 class="h2" id="challenge-running">Verifying you are human. This may take a few seconds.</h2>
<noscript><div class="h2"><span id="challenge-error-text">Enable JavaScript and cookies to continue</span></div></noscript>
</div></div>{solver}
<script>(function(){{window._cf_chl_opt={options};var cpo=document.createElement('script');{loader}window._cf_chl_opt.cOgUHash=location.hash===''&&location.href.indexOf('#')!==-1?'#':location.hash;if(window.history&&window.history.replaceState){{var ogU=location.pathname+window._cf_chl_opt.cOgUQuery+window._cf_chl_opt.cOgUHash;history.replaceState(null,null,"/?__cf_chl_rt_tk={token[:40]}"+window._cf_chl_opt.cOgUHash)}}document.getElementsByTagName('head')[0].appendChild(cpo);}}());</script>
<div class="footer" role="contentinfo"><div class="footer-inner"><div class="text-center" id="footer-text">Performance &amp; security by <a rel="noopener noreferrer" href="https://www.cloudflare.com" target="_blank">Cloudflare</a></div></div></div>
</body></html>
"""


def error_page(code: int, host: str, ray: str) -> str:
    """A Cloudflare error page: 1020 (firewall), 1015 (rate limited) or a 52x origin error."""
    if code == 1020:
        title = f"Access denied | {host} used Cloudflare to restrict access"
        headline = "Access denied"
        why = ("The site owner may have set restrictions that prevent you from "
               "accessing the site.")
    elif code == 1015:
        title = f"Access denied | {host} used Cloudflare to restrict access"
        headline = "You are being rate limited"
        why = "The owner of this website has banned you temporarily from accessing this website."
    else:
        headline = ORIGIN_ERRORS.get(code, "Origin error")
        title = f"{host} | {code}: {headline}"
        why = "The web server reported an error or did not answer in time."
    return f"""<!DOCTYPE html>
<html class="no-js" lang="en-US"><head><title>{title}</title>
<meta charset="UTF-8"><meta name="robots" content="noindex, nofollow">
<meta name="viewport" content="width=device-width,initial-scale=1">
<link rel="stylesheet" id="cf_styles-css" href="/cdn-cgi/styles/cf.errors.css">
</head><body><div id="cf-wrapper"><div id="cf-error-details" class="p-0">
<header class="mx-auto pt-10 lg:pt-6 lg:px-8 w-240 lg:w-full mb-15 antialiased">
<h1 class="inline-block md:block mr-2 md:mb-2 font-light text-60 md:text-3xl text-black-dark leading-tight">
<span data-translate="error">Error</span><span class="cf-error-code">{code}</span></h1>
<h2 class="text-gray-600 leading-1.3 text-3xl font-light">{headline}</h2>
</header>
<section class="w-240 lg:w-full mx-auto mb-8 lg:px-8"><div class="w-1/2 md:w-full">
<h2 class="text-3xl leading-tight font-normal mb-4 text-black-dark antialiased" data-translate="what_happened">What happened?</h2>
<p>{why}</p></div></section>
<div class="cf-error-footer cf-wrapper w-240 lg:w-full py-10 sm:py-4 sm:px-8 mx-auto text-center sm:text-left border-solid border-0 border-t border-gray-300">
<p class="text-13"><span class="cf-footer-item sm:block sm:mb-1">Cloudflare Ray ID: <strong class="font-semibold">{ray.split("-")[0]}</strong></span>
<span class="cf-footer-separator sm:hidden">&bull;</span>
<span class="cf-footer-item sm:block sm:mb-1"><span>Performance &amp; security by</span> <a rel="noopener noreferrer" href="https://www.cloudflare.com/5xx-error-landing" id="brand_link" target="_blank">Cloudflare</a></span></p>
</div></div></div></body></html>
"""
