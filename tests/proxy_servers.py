"""Real proxies on loopback for the tests: pproxy (PyPI) as an HTTP CONNECT or a SOCKS5
proxy with a login, in a process of its own whose log shows every connection it makes
(``http 127.0.0.1:50123 -> 127.0.0.1:8090``)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

USER, PASSWORD = "alice", "pr0xy-s3cret-7731"

#: pproxy takes uvloop when it finds it and then asks for a loop uvloop will not make;
#: it runs on asyncio's own here.
LAUNCH = ("import asyncio, sys; sys.modules['uvloop'] = None; "
          "from pproxy.server import main; asyncio.set_event_loop(asyncio.new_event_loop()); "
          "main(sys.argv[1:])")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProxyServer:
    """``kind``: ``http``, ``https`` (HTTP CONNECT spoken over TLS, with ``certificate``:
    the folder of its ``cert.pem`` and ``key.pem``) or ``socks5``. ``--auth 0``: every
    connection logs in (pproxy would otherwise let an address in for a month after one
    good login)."""

    def __init__(self, kind: str, directory: Path, certificate: Path | None = None) -> None:
        self.kind, self.port = kind, free_port()
        self.log = directory / f"pproxy-{kind}-{self.port}.log"
        self._out = self.log.open("w")
        listen = "http+ssl" if kind == "https" else kind
        tls = ["--ssl", f"{certificate / 'cert.pem'},{certificate / 'key.pem'}"] \
            if certificate else []
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", LAUNCH, "-l",
             f"{listen}://127.0.0.1:{self.port}#{USER}:{PASSWORD}", "-v", "--auth", "0", *tls],
            stdout=self._out, stderr=subprocess.STDOUT)
        try:
            # Generous: it bounds a hang on a loaded machine, it measures nothing.
            deadline = time.monotonic() + 120
            while "Serving on" not in self.text():
                assert self.proc.poll() is None, self.text()
                assert time.monotonic() < deadline, f"pproxy did not start: {self.text()}"
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def url(self, scheme: str | None = None, password: str = PASSWORD) -> str:
        return f"{scheme or self.kind}://{USER}:{password}@127.0.0.1:{self.port}"

    @property
    def shown(self) -> str:
        """How the daemon names it: credentials masked."""
        return f"{self.kind}://***@127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log.read_text()

    def connections(self, destination: str) -> list[str]:
        """The connections it made to ``destination`` (``host:port``)."""
        return [line for line in self.text().splitlines()
                if line.endswith(f"-> {destination}")]

    def refusals(self) -> int:
        return self.text().count("Unauthorized")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()
