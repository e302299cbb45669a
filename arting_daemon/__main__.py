"""``arting-daemon`` / ``python -m arting_daemon``: load settings, serve until stopped."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from aiohttp import web

from . import __version__, logs, process
from .app import check_exposure, create_app
from .check import cli as check_cli
from .config import ConfigError, Settings, load_settings
from .keys import cli as keys_cli
from .providers import cli as providers_cli
from .providers.arting import cli as tokens_cli
from .recording import RecordError

log = logging.getLogger("arting_daemon")   # not "__main__" when run with -m


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="arting-daemon",
        description="Serve Arting.ai's image models over the OpenAI, AUTOMATIC1111 and "
                    "native job APIs. Settings come from defaults, then arting.toml, then "
                    "ARTING_* environment variables, then these options.")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1; anything "
                        "else needs an API key or --allow-insecure)")
    parser.add_argument("--port", type=int, help="TCP port (default 8090; 0 picks a free one)")
    add_upstream_options(parser, None)
    parser.add_argument("--allow-insecure", action="store_true", default=None,
                        help="allow a non-loopback --host without an API key")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--version", action="version", version=f"arting-2api {__version__}")
    _add_shared(parser, None)
    shared = argparse.ArgumentParser(add_help=False)
    _add_shared(shared, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     title="commands (without one: serve)")
    keys_cli.add_parser(commands, shared)
    tokens_cli.add_parser(commands, shared)
    check_cli.add_parser(commands, shared, add_upstream_options)
    providers_cli.add_parser(commands)
    return parser.parse_args(argv)


def add_upstream_options(parser: argparse.ArgumentParser, default) -> None:
    """Which Arting to talk to: the live one, or the emulator (replaying a record)."""
    parser.add_argument("--sandbox", action="store_true", default=default,
                        help="run the built-in Arting emulator and use it instead of "
                             "api.arting.ai: try every client with no account or network")
    parser.add_argument("--replay", metavar="DIR", type=Path, default=default,
                        help="with --sandbox: the emulator answers as Arting did in a record "
                             "written by `arting-daemon check --record DIR`")


def settings_from(args: argparse.Namespace, **overrides) -> Settings:
    """The settings for this run: defaults ← arting.toml ← environment ← options.
    Raises ``ConfigError`` (a bad value, or a record that cannot be replayed)."""
    options = {"data_dir": getattr(args, "data_dir", None),
               "sandbox": getattr(args, "sandbox", None),
               "sandbox_replay": getattr(args, "replay", None),
               "log_level": getattr(args, "log_level", None), **overrides}
    settings = load_settings(getattr(args, "config", None), overrides=options)
    if settings.sandbox_replay is not None:
        if not settings.sandbox:
            raise ConfigError("--replay (sandbox_replay) needs --sandbox (sandbox = true): "
                              "the emulator is what replays a record.")
        from .sandbox.replay import load_replay   # the emulator is loaded only when used

        try:
            load_replay(settings.sandbox_replay)
        except RecordError as exc:
            raise ConfigError(f"Cannot replay: {exc}") from None
    return settings


def _add_shared(parser: argparse.ArgumentParser, default) -> None:
    """Options the daemon and its commands read the same way (``default``: SUPPRESS for
    a command, so the option may also come before it)."""
    parser.add_argument("--config", metavar="PATH", type=Path, default=default,
                        help="TOML settings file (default: $ARTING_CONFIG, else ./arting.toml "
                             "if present)")
    parser.add_argument("--data-dir", type=Path, default=default,
                        help="where images, the job journal, the keys and the identity are kept")


class CannotListen(Exception):
    """The address or port is taken (or not ours to use)."""


async def serve(settings: Settings) -> None:
    app = create_app(settings)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                           shutdown_timeout=2.0)
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        process.settle_gc()
    except BaseException as exc:
        started = runner.server is not None      # so it was the address that failed
        await runner.cleanup()     # closes the services that did start, in reverse
        if started and isinstance(exc, OSError):
            raise CannotListen(exc.strerror or str(exc)) from None
        raise
    host, port = runner.addresses[0][:2]
    shown = f"[{host}]" if ":" in host else host
    mode = " (sandbox: no account needed, nothing leaves this machine)" \
        if settings.sandbox else ""
    print(f"arting-daemon {__version__} listening on http://{shown}:{port}{mode}", flush=True)
    log.info("running on %s's event loop", process.describe(asyncio.get_running_loop()))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # Windows: Ctrl+C raises KeyboardInterrupt instead
            pass
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "check":
        return check_cli.main(args, settings_from)
    if args.command == "providers":
        return providers_cli.run(args)
    try:
        settings = settings_from(args, host=args.host, port=args.port,
                                 allow_insecure=args.allow_insecure)
        if args.command == "keys":
            return keys_cli.run(args, settings)
        if args.command == "tokens":
            return tokens_cli.run(args, settings)
        check_exposure(settings)
    except ConfigError as exc:
        print(f"arting-daemon: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:     # the keys file, or a key's name
        print(f"arting-daemon: {exc}", file=sys.stderr)
        return 1
    logs.setup(settings.log_level, settings.log_stream)
    try:
        process.run(serve(settings), settings.event_loop)
    except KeyboardInterrupt:
        pass
    except ConfigError as exc:   # found while starting (e.g. a journal from a newer version)
        print(f"arting-daemon: {exc}", file=sys.stderr)
        return 2
    except CannotListen as exc:
        print(f"arting-daemon: cannot listen on {settings.host}:{settings.port}: {exc}. "
              "Is another daemon running? Pick another port with --port or ARTING_PORT.",
              file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. a data directory we may not write to
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"arting-daemon: {exc.strerror or exc}{where}; check `data_dir` "
              "(--data-dir, ARTING_DATA_DIR).", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
