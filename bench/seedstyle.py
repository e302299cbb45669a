"""``python -m bench.seedstyle --upstream URL [--port N]``: the seed project's approach,
as the baseline of bench section 7.

The seed (lzA6/arting-2api, ``docs/protocol/arting.md`` §8) is a FastAPI app served
by uvicorn with one worker (``uvicorn[standard]``: uvloop and httptools). For
``POST /v1/images/generations`` it makes every Arting call with one shared
cloudscraper session, synchronously, in the event loop's default thread pool; it
sleeps 2 s before each poll, polls for at most 240 s, and answers with Arting's own
image links. It logs each create at INFO (the request's headers and body) and every
request (uvicorn's access log). This module does the same with code of our own: only
the approach is the seed's, so its CPU per job can be set beside the daemon's.

The token is the bench's fake one, so the headers are logged with it masked (the
seed logs it in clear, §8.6): the same work, without a secret in a file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import sys
import time

import cloudscraper
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from arting_daemon.config import DEFAULT_USER_AGENT

from .clients import TOKEN

POLL_INTERVAL = 2.0         # seconds slept before every poll (the seed's; --poll-interval)
POLL_TIMEOUT = 240.0        # seconds of polling before giving up
REQUEST_TIMEOUT = 300.0     # seconds one Arting call may take
CREATE, GET = "/api/cg/text-to-image/create", "/api/cg/text-to-image/get"

log = logging.getLogger("seedstyle")


def arting_body(request: dict) -> dict:
    """The seed's mapping of an OpenAI request onto Arting's create body (§8.3)."""
    prompt = request.get("prompt")
    if not prompt:
        raise HTTPException(400, "prompt must not be empty")
    try:
        width, height = (int(side) for side in str(request.get("size")).split("x"))
    except ValueError:
        width, height = 512, 768
    return {"prompt": prompt, "model_id": request.get("model", "oneFORALLAnime"),
            "lora_ids": request.get("lora_ids", ""),
            "lora_weight": str(request.get("lora_weight", 0.7)),
            "samples": request.get("n", 1), "width": width, "height": height,
            "guidance": request.get("guidance", 7), "sampler": request.get("sampler", "Euler a"),
            "steps": request.get("steps", 25), "seed": request.get("seed", -1),
            "clip_skip": request.get("clip_skip", 2),
            "negative_prompt": request.get("negative_prompt", ""),
            "is_nsfw": request.get("is_nsfw", False)}


class SeedStyle:
    """One shared cloudscraper session; every call a blocking one in the default pool."""

    def __init__(self, upstream: str, token: str, interval: float) -> None:
        self.upstream, self.token, self.interval = upstream.rstrip("/"), token, interval
        self.scraper = cloudscraper.create_scraper()

    def headers(self) -> dict[str, str]:
        return {"Accept": "application/json, text/plain, */*",
                "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8", "Authorization": self.token,
                "Content-Type": "application/json", "Origin": "https://arting.ai",
                "Referer": "https://arting.ai/", "User-Agent": DEFAULT_USER_AGENT}

    async def call(self, path: str, body: dict) -> dict:
        headers = self.headers()
        response = await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.scraper.post(self.upstream + path, headers=headers, json=body,
                                            timeout=REQUEST_TIMEOUT))
        response.raise_for_status()
        return response.json()

    async def generate(self, request: dict) -> list[str]:
        body = arting_body(request)
        shown = {**self.headers(), "Authorization": "***"}
        log.info("POST %s%s", self.upstream, CREATE)
        log.info("headers: %s", json.dumps(shown, indent=2))
        log.info("payload: %s", json.dumps(body, indent=2, ensure_ascii=False))
        try:
            created = await self.call(CREATE, body)
            if created.get("code") != 100000 or "request_id" not in (created.get("data") or {}):
                raise RuntimeError(f"create failed: {created.get('message')}")
            request_id = created["data"]["request_id"]
            log.info("created %s", request_id)
            return await self.follow(request_id)
        except Exception as exc:
            log.error("generation failed: %s", exc)
            raise HTTPException(502, f"upstream error: {exc}") from None

    async def follow(self, request_id: str) -> list[str]:
        """Sleep, poll, until Arting lists the images; errors only log and poll on."""
        started = time.time()
        while time.time() - started < POLL_TIMEOUT:
            await asyncio.sleep(self.interval)
            try:
                answer = await self.call(GET, {"request_id": request_id})
            except Exception as exc:
                log.error("poll of %s failed: %s", request_id, exc)
                continue
            output = (answer.get("data") or {}).get("output")
            if answer.get("code") == 100000 and output:
                log.info("%s done: %d result(s)", request_id, len(output))
                return output
            log.debug("%s still running", request_id)
        raise RuntimeError("polling timed out")


def create_app(upstream: str, token: str, interval: float = POLL_INTERVAL) -> FastAPI:
    app = FastAPI()
    seed = SeedStyle(upstream, token, interval)

    @app.post("/v1/images/generations")
    async def generations(request: Request) -> JSONResponse:
        urls = await seed.generate(await request.json())
        return JSONResponse({"created": int(time.time()), "data": [{"url": u} for u in urls]})

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.seedstyle", description=__doc__)
    parser.add_argument("--upstream", required=True, help="the Arting emulator's base URL")
    parser.add_argument("--token", default=TOKEN)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--poll-interval", type=float, default=POLL_INTERVAL,
                        help="seconds before each poll (the seed's 2 s; shorter for smoke runs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s | %(levelname)-8s | %(name)s:%(funcName)s - "
                               "%(message)s")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(4096)           # connections wait in the backlog until uvicorn accepts
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(create_app(args.upstream, args.token, args.poll_interval), workers=1,
                            log_level="info", backlog=4096)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
