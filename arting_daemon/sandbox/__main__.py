"""``python -m arting_daemon.sandbox``: run the Arting emulator (or, with ``--kind``, the
midjourney-proxy or Stability AI one) until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path

from . import Sandbox
from .emulator import Emulator
from .providers import EMULATORS
from .replay import RecordError, load_replay, start_sandbox


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m arting_daemon.sandbox",
                                     description="Run a local emulator of Arting's image API.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free)")
    parser.add_argument("--generation-time", type=float, default=0.0, metavar="S",
                        help="seconds from create to done")
    parser.add_argument("--public-url", metavar="URL",
                        help="the base of the image URLs handed out, when clients reach "
                             "the emulator by another name than its address (a container's "
                             "service name)")
    parser.add_argument("--replay", type=Path, metavar="DIR",
                        help="answer as recorded by `arting-daemon check --record DIR`")
    parser.add_argument("--kind", choices=["arting", *EMULATORS], default="arting",
                        help="which upstream to emulate (default: Arting); the "
                             "midjourney-proxy one takes the secret `sk-sandbox`, as "
                             "Stability AI's takes that key")
    args = parser.parse_args(argv)
    if args.kind != "arting" and args.replay is not None:
        parser.exit(2, f"{parser.prog}: --replay is for the Arting emulator\n")
    if args.replay is not None:
        try:
            load_replay(args.replay)
        except RecordError as exc:
            parser.exit(2, f"{parser.prog}: {exc}\n")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, args.generation_time, args.replay,
                           args.kind, args.public_url))


async def _serve(host: str, port: int, generation_time: float, replay: Path | None,
                 kind: str = "arting", public_url: str | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C raises instead
            loop.add_signal_handler(sig, stop.set)
    sandbox: Sandbox | Emulator
    if kind == "arting":
        sandbox = await start_sandbox(generation_time, replay, host, port)
        if public_url:
            sandbox.configure(public_url=public_url)
        name = "Arting sandbox"
    else:
        sandbox, _ = EMULATORS[kind](generation_time)
        await sandbox.start(host, port)
        name = f"{sandbox.NAME} emulator"
    print(f"{name} listening on {sandbox.url}"
          + (f", replaying {replay}" if replay else ""), flush=True)
    try:
        await stop.wait()
    finally:
        await sandbox.close()


if __name__ == "__main__":
    main()
