"""``python -m bench [NAME …] [--quick | --smoke] [--json FILE]``

Runs the benchmarks against the Arting emulator and prints every figure beside its
baseline (measured in the same run), the ratio, and the target. Names: latency,
scale, polling, startup, images, replicas, seed (default: all, in that order; several
minutes, ``seed`` alone about one).
``--quick`` runs shorter variants (about 2 minutes); ``--smoke`` the tiniest (seconds;
what the test suite runs so the code cannot rot — its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from . import images, latency, polling, procs, replicas, scale, seed, startup
from .report import machine, render

BENCHMARKS = {"latency": latency, "scale": scale, "polling": polling, "startup": startup,
              "images": images, "replicas": replicas, "seed": seed}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", const="quick", dest="mode",
                      help="shorter variants (less precise)")
    size.add_argument("--smoke", action="store_const", const="smoke", dest="mode",
                      help="the tiniest variants: checks the code runs, measures nothing")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="run the daemons under cProfile and write their statistics "
                             "to DIR (slows them down: for finding hot spots, not figures)")
    parser.set_defaults(mode="full")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)}; "
                     f"choose from {', '.join(BENCHMARKS)}")
    args.names = args.names or list(BENCHMARKS)
    return args


async def run(args: argparse.Namespace) -> list[dict]:
    results = []
    with procs.scratch() as tmp:
        for name in args.names:
            workdir = tmp / name
            workdir.mkdir()
            started = time.perf_counter()
            section = await BENCHMARKS[name].run(args.mode, workdir)
            section.notes.append(f"took {time.perf_counter() - started:.1f} s")
            print(render(section), flush=True)
            results.append(section.to_json())
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        os.environ["BENCH_PROFILE_DIR"] = str(args.profile.resolve())
    info = machine()
    print(f"arting-2api benchmarks ({args.mode}) on {info['nproc']} × {info['cpu']}, "
          f"Python {info['python']}, load average {info['loadavg']}\n", flush=True)
    try:
        results = asyncio.run(run(args))
    except KeyboardInterrupt:
        print("interrupted; every process the bench started has been stopped",
              file=sys.stderr)
        return 130
    if args.json:
        args.json.write_text(json.dumps({"mode": args.mode, "machine": info,
                                         "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                                         "sections": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
