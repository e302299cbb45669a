"""``python -m arting_daemon.sandbox``: run the Arting emulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from .server import Sandbox


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m arting_daemon.sandbox",
                                     description="Run a local emulator of Arting's image API.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free)")
    parser.add_argument("--generation-time", type=float, default=0.0, metavar="S",
                        help="seconds from create to done")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, args.generation_time))


async def _serve(host: str, port: int, generation_time: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C raises instead
            loop.add_signal_handler(sig, stop.set)
    sandbox = Sandbox(generation_time=generation_time)
    url = await sandbox.start(host, port)
    print(f"Arting sandbox listening on {url}", flush=True)
    try:
        await stop.wait()
    finally:
        await sandbox.close()


if __name__ == "__main__":
    main()
