"""``arting-daemon tokens``: add, list, remove, import and export runtime Arting tokens.

It works on the data directory's ``tokens.json`` directly (with ``redis_url``: on the
replicas' Redis), whether or not a daemon is running (a running daemon notices within
half a second), as ``arting-daemon keys`` does. A token is read from standard input
(or ``--from FILE``), never from the command line, where other users and the shell's
history would see it; it may be a bare token, a "Copy as cURL" command or a "Copy
request headers" block.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from ...backends import choose
from ...clock import SYSTEM
from ...config import Settings
from ...errors import ArtingError
from ...metrics import Metrics
from .paste import parse
from .vault import Entry, Vault, new_entry


def add_parser(commands: Any, shared: argparse.ArgumentParser) -> None:
    tokens = commands.add_parser("tokens", parents=[shared], help="add, list and remove "
                                 "Arting tokens at runtime",
                                 description=__doc__.splitlines()[0].split(": ", 1)[1])
    actions = tokens.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", parents=[shared], help="add a token read from standard "
                             "input (a token, a cURL command or a headers block)")
    add.add_argument("--label", help="its label (default: added-N)")
    add.add_argument("--daily-limit", type=int, metavar="N", help="images per UTC day")
    add.add_argument("--min-interval", type=float, metavar="S",
                     help="seconds between two creates")
    add.add_argument("--from", dest="source", type=Path, metavar="FILE",
                     help="read it from FILE instead of standard input")
    listing = actions.add_parser("list", parents=[shared], help="the runtime tokens, without "
                                 "the tokens")
    listing.add_argument("--json", action="store_true", help="machine-readable")
    remove = actions.add_parser("remove", parents=[shared], help="remove a token (a running "
                                "daemon's jobs on it finish)")
    remove.add_argument("label")
    load = actions.add_parser("import", parents=[shared], help="add many: one token a line, "
                              "from standard input or FILE")
    load.add_argument("--from", dest="source", type=Path, metavar="FILE")
    actions.add_parser("export", parents=[shared], help="labels and fingerprints as JSON, "
                       "never the tokens")


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    backend = choose(settings, SYSTEM)      # the tokens of replicas live in their Redis
    await backend.open(Metrics())
    vault = backend.vault()
    try:
        await vault.open()
        return await _act(args, vault)
    except ArtingError as exc:
        print(f"arting-daemon: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await vault.close()
        await backend.close()


def _read(args: argparse.Namespace) -> str:
    return args.source.read_text() if args.source else sys.stdin.read()


async def _act(args: argparse.Namespace, vault: Vault) -> int:
    if args.action in ("add", "import"):
        found = parse(_read(args))
        taken, entries, seen = set(vault.entries), [], []
        for n, pasted in enumerate(found):
            if (known := vault.find(pasted.token)) is not None:
                seen.append(known.label)
                continue
            label = getattr(args, "label", None)
            if label and len(found) > 1:
                label = f"{label}-{n + 1}"
            entry = new_entry(label, pasted.token, taken, cookies=pasted.cookies,
                              user_agent=pasted.user_agent,
                              daily_limit=getattr(args, "daily_limit", None),
                              min_interval=getattr(args, "min_interval", None))
            if entry.label in taken:
                print(f"arting-daemon: a token is labelled {entry.label} already; remove it "
                      "first, or pick another --label.", file=sys.stderr)
                return 1
            taken.add(entry.label)
            entries.append(entry)
        added, raced = await vault.add(entries) if entries else ([], [])
        for entry in added:
            print(f"{entry.label}  {entry.fingerprint}  added{_extras(entry)}")
        seen += raced
        for label in seen:
            print(f"{label}  already there (same fingerprint)", file=sys.stderr)
    elif args.action == "list":
        listed = [e.public() for e in vault.entries.values()]
        if args.json:
            print(json.dumps(listed, indent=2))
        for entry in [] if args.json else vault.entries.values():
            print(f"{entry.label}  {entry.fingerprint}{_extras(entry)}")
        if not listed and not args.json:
            print("no runtime tokens: `arting-daemon tokens add < token.txt` (tokens from "
                  "the configuration are not listed here)", file=sys.stderr)
    elif args.action == "export":
        print(json.dumps({"tokens": [{"label": e.label, "fingerprint": e.fingerprint,
                                      "daily_limit": e.daily_limit,
                                      "min_interval": e.min_interval}
                                     for e in vault.entries.values()]}, indent=2))
    else:
        gone = await vault.remove(args.label)
        if gone is None:
            print(f"arting-daemon: no runtime token {args.label!r}; `arting-daemon tokens "
                  "list` shows them.", file=sys.stderr)
            return 1
        print(f"{gone.label} removed; a running daemon takes no new job on it from now on.")
    return 0


def _extras(entry: Entry) -> str:
    parts = []
    if entry.cookies:
        parts.append("cookies " + ",".join(sorted(entry.cookies)))
    if entry.user_agent:
        parts.append("its own User-Agent")
    if entry.daily_limit is not None:
        parts.append(f"{entry.daily_limit} images/day")
    if entry.min_interval is not None:
        parts.append(f"{entry.min_interval:g} s apart")
    return f"  ({'; '.join(parts)})" if parts else ""
