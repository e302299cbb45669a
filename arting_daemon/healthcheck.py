"""``python -m arting_daemon.healthcheck``: exit 0 when the daemon here answers ``/healthz``.

The container image's HEALTHCHECK runs this, as the image has no curl. It uses the
standard library only (it runs every half minute) and dials the address the daemon
was given by environment, as the image gives it; never through a proxy.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from collections.abc import Mapping

#: A wildcard address is reached through loopback.
_DIAL = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def healthz_url(environ: Mapping[str, str] = os.environ) -> str:
    host = environ.get("ARTING_HOST", "127.0.0.1")
    host = _DIAL.get(host, host)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{environ.get('ARTING_PORT') or 8090}/healthz"


def main() -> int:
    url = healthz_url()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=4) as response:
            status = json.load(response).get("status")
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if status != "ok":
        print(f"unhealthy: {url} says {status!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
