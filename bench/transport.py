"""``python -m bench.transport [--exchanges N]``: the CPU each client spends on one of
Arting's exchanges (a small JSON POST and its small JSON answer), direct and through real
proxies on loopback (pproxy, HTTP CONNECT and SOCKS5 with a login, in processes of their
own; the server too), so the figure is the client's alone: this process's CPU time over
N sequential exchanges on kept-alive connections.

Clients: the light pool (``wire.py``, tunnelling through the proxy itself), aiohttp
(natively through an http proxy, aiohttp-socks through SOCKS5), curl_cffi (its async
session, impersonating Chrome). A job is about 8 exchanges (a create, ~6 polls, an image).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import aiohttp

from arting_daemon.providers.arting import wire
from arting_daemon.transport.director import aiohttp_proxy, socks_session
from arting_daemon.transport.proxies import parse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from proxy_servers import ProxyServer, free_port  # noqa: E402

EXCHANGES_PER_JOB = 8
BODY = b'{"request_id": "0123456789abcdef0123456789abcdef"}'
SERVER = """
import sys
from aiohttp import web
async def answer(request):
    await request.read()
    return web.json_response({"code": 100000, "message": "ok", "data": {"status": "pending",
                              "output": []}})
app = web.Application(); app.router.add_post("/api/cg/text-to-image/get", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


async def light(url: str, proxy: str | None, n: int) -> float:
    origin = wire.Origin(url, proxy=parse(proxy) if proxy else None)
    try:
        return await measure(n, lambda: origin.request(
            "POST", "/api/cg/text-to-image/get", {"Content-Type": "application/json"}, BODY,
            10))
    finally:
        origin.close()


async def with_aiohttp(url: str, proxy: str | None, n: int) -> float:
    parsed = parse(proxy) if proxy else None
    session = socks_session(parsed) if parsed and parsed.socks else aiohttp.ClientSession()
    extra = aiohttp_proxy(parsed) if parsed and not parsed.socks else {}

    async def one():
        async with session.post(url + "/api/cg/text-to-image/get", data=BODY,
                                headers={"Content-Type": "application/json"}, **extra) as r:
            await r.read()
    try:
        return await measure(n, one)
    finally:
        await session.close()


async def with_curl(url: str, proxy: str | None, n: int) -> float:
    from curl_cffi.requests import AsyncSession

    async with AsyncSession(impersonate="chrome") as session:
        return await measure(n, lambda: session.post(
            url + "/api/cg/text-to-image/get", data=BODY, proxy=proxy,
            headers={"Content-Type": "application/json"}))


async def measure(n: int, one) -> float:
    """µs of this process's CPU per exchange (after a warm-up on the same connection)."""
    for _ in range(20):
        await one()
    started = time.process_time()
    for _ in range(n):
        await one()
    return (time.process_time() - started) / n * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.transport")
    parser.add_argument("--exchanges", type=int, default=2000)
    args = parser.parse_args(argv)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    with TemporaryDirectory() as tmp:
        http, socks = ProxyServer("http", Path(tmp)), ProxyServer("socks5", Path(tmp))
        try:
            time.sleep(1.0)
            url = f"http://127.0.0.1:{port}"
            routes = {"direct": None, "http proxy": http.url(), "socks5 proxy":
                      socks.url("socks5h")}
            print(f"{'client':<12} {'route':<14} {'µs/exchange':>12} {'µs/job':>8}")
            for name, run in (("light pool", light), ("aiohttp", with_aiohttp),
                              ("curl_cffi", with_curl)):
                for route, proxy in routes.items():
                    cost = asyncio.run(run(url, proxy, args.exchanges))
                    print(f"{name:<12} {route:<14} {cost:>12.0f} "
                          f"{cost * EXCHANGES_PER_JOB:>8.0f}", flush=True)
        finally:
            http.stop()
            socks.stop()
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
