"""``python -m arting_daemon.healthcheck``, the container image's health check."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit


def check(port: int, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("ARTING_", "API_")) and "proxy" not in k.lower()}
    return subprocess.run([sys.executable, "-m", "arting_daemon.healthcheck"],
                          capture_output=True, text=True, timeout=30,
                          env={**clean, "ARTING_PORT": str(port), **env})


def test_healthy_when_the_daemon_answers_even_behind_a_proxy(daemon):
    port = urlsplit(daemon.url).port
    assert check(port, ARTING_HOST="0.0.0.0").returncode == 0
    # A proxy in the container's environment must not carry the loopback check away.
    assert check(port, ARTING_HOST="0.0.0.0", http_proxy="http://127.0.0.1:9",
                 HTTP_PROXY="http://127.0.0.1:9").returncode == 0


def test_unhealthy_when_nothing_answers():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]            # bound, not listening: refused
        proc = check(port)
    assert proc.returncode == 1
    assert f"unhealthy: http://127.0.0.1:{port}/healthz" in proc.stderr
