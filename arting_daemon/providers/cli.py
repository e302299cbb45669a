"""``arting-daemon providers``: the installed provider kinds (name, package, version,
contract, features), and the plugins left out with why; ``--json`` for programs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .contract import CONTRACT_VERSION
from .kinds import installed


def add_parser(commands: Any) -> None:
    listing = commands.add_parser(
        "providers", help="list the installed provider kinds (plugins included)",
        description=__doc__.split("\n\n")[0].replace("\n", " "))
    listing.add_argument("--json", action="store_true", help="machine-readable")


def run(args: argparse.Namespace) -> int:
    found = installed()
    kinds = [k.describe() for _, k in sorted(found.kinds.items())]
    if args.json:
        print(json.dumps({"contract": CONTRACT_VERSION, "kinds": kinds,
                          "left_out": found.problems}, indent=2))
        return 0
    rows = [("KIND", "PACKAGE", "VERSION", "CONTRACT", "FEATURES")] + [
        (k["kind"], k["package"], k["version"], k["contract"], ", ".join(k["features"]) or "-")
        for k in kinds]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
    print(f"(this daemon's provider contract: {CONTRACT_VERSION})")
    for problem in found.problems:
        print(f"left out: {problem}", file=sys.stderr)
    return 0
