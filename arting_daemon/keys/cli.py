"""``arting-daemon keys``: make, list and revoke user keys from the command line.

It works on the data directory's ``keys.sqlite3`` directly (with ``redis_url``: on the
replicas' Redis), whether or not a daemon is running (a running daemon notices within
half a second), so the operator needs no admin key to hand out the first keys.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import datetime, timezone
from typing import Any

from ..backends import choose
from ..clock import SYSTEM
from ..config import Settings
from ..generation import Catalog, Rules
from ..metrics import Metrics
from .limits import LIMITS, KeyLimits
from .ring import KeyStore
from .store import ApiKey


def add_parser(commands: Any, shared: argparse.ArgumentParser) -> None:
    keys = commands.add_parser("keys", parents=[shared], help="make, list and revoke user keys",
                               description=__doc__.splitlines()[0].split(": ", 1)[1])
    actions = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", parents=[shared], help="make a key; prints its "
                                "secret, shown this once")
    create.add_argument("--name", required=True, help="who or what the key is for")
    for name, field in KeyLimits.model_fields.items():      # one option per limit
        flag = "--" + name.replace("_", "-")
        if name == "models":
            create.add_argument(flag, type=_names, metavar="A,B",
                                help="the model ids the key may use (default: any)")
        else:
            least = next((m.ge for m in field.metadata if hasattr(m, "ge")), 0)
            create.add_argument(flag, type=_positive if least >= 1 else _count, metavar="N",
                                help=field.description)
    create.add_argument("--expires", type=_when, metavar="WHEN",
                        help="when the key stops working: an ISO date/time (UTC) or `30d`")
    listing = actions.add_parser("list", parents=[shared], help="every key, without secrets")
    listing.add_argument("--json", action="store_true", help="machine-readable")
    revoke = actions.add_parser("revoke", parents=[shared], help="revoke a key for good")
    revoke.add_argument("id", help="the key's id (key_…)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    models = None
    if args.action == "create" and args.models:
        catalog = Catalog(Rules.of(settings))
        unknown = [m for m in args.models if not catalog.has_model(m)]
        if unknown:
            raise ValueError(f"unknown model(s) {', '.join(unknown)}; GET /v1/models lists "
                             "them (add others with `extra_models`)")
        models = tuple(catalog.resolve_model(m) for m in args.models)
    backend = choose(settings, SYSTEM)      # the keys of replicas live in their Redis
    await backend.open(Metrics())
    try:
        async with backend.keys() as keys:
            return await _act(args, keys, models)
    finally:
        await backend.close()


async def _act(args: argparse.Namespace, keys: KeyStore, models: tuple[str, ...] | None) -> int:
    """Carry out the command on the keys."""
    if args.action == "create":
        limits = KeyLimits(**{name: getattr(args, name)
                              for name in KeyLimits.model_fields if name != "models"},
                           models=models)
        key, secret = await keys.create(args.name, limits, args.expires)
        print(secret)
        print(f"{key.id} “{key.name}” {_limits_text(key)} — the key above is shown this "
              "once; clients send it as `Authorization: Bearer <key>`.", file=sys.stderr)
    elif args.action == "list":
        found = keys.all()
        if args.json:
            print(json.dumps([k.public() for k in found], indent=2))
        for key in [] if args.json else found:
            print(f"{key.id}  {key.shown}…  {_state(key):8}  {key.name}  {_limits_text(key)}")
        if not found and not args.json:
            print("no keys yet: `arting-daemon keys create --name NAME`", file=sys.stderr)
    else:
        revoked = await keys.revoke(args.id)
        if revoked is None:
            print(f"arting-daemon: no key {args.id!r}; `arting-daemon keys list` shows "
                  "them.", file=sys.stderr)
            return 1
        print(f"{revoked.id} “{revoked.name}” revoked; a running daemon refuses it from now "
              "on.")
    return 0


def _state(key: ApiKey) -> str:
    return "revoked" if key.revoked_at else "expired" if key.refusal(time.time()) else "active"


def _limits_text(key: ApiKey) -> str:
    units = {limit.field: limit.unit for limit in LIMITS}
    parts = []
    for name, value in key.limits:
        if name == "models" and value is not None:
            parts.append("models " + ",".join(value))
        elif value is not None:
            parts.append(f"{value} {units[name]}")
    if key.expires_at:
        parts.append("expires " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(key.expires_at)))
    return "(" + ("; ".join(parts) or "no limits") + ")"


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def _positive(value: str) -> int:
    number = _count(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def _when(value: str) -> float:
    if value.endswith("d") and value[:-1].isdigit():
        return time.time() + int(value[:-1]) * 86400
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither an ISO date/time nor `30d`"
                                         ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
