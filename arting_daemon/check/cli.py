"""``arting-daemon check``: measure the live Arting, hold it against the settings, and
say what to change.

It reads the settings exactly as the daemon does, prints one line per finding, and
exits 0 when everything the daemon needs works (1 when something does not, 2 when it
could not run). ``--generate`` and ``--img2img`` spend a generation each (``--generate``
one more on each other provider): the check says so first, naming each, and asks, or
needs ``--yes`` when it cannot ask.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

from .. import __version__, logs
from ..config import ConfigError, Settings
from ..recording import Recorder, Redactor, write_record
from .generate import describe_generation
from .provider_generate import describe, generating
from .report import Finding, Report
from .runner import Options, identities_for, run_check

PROG = "arting-daemon check"


def add_parser(commands, shared: argparse.ArgumentParser,
               add_upstream_options: Callable[[argparse.ArgumentParser, object], None]) -> None:
    """``shared``: the options every command reads (--config, --data-dir)."""
    parser = commands.add_parser(
        "check", parents=[shared], help="measure the live Arting and say what to configure",
        description="Measure how the live Arting behaves (reach, Cloudflare, every token, the "
                    "answers' shape), compare it with the settings, and print one line per "
                    "finding, with the arting.toml line to add where a value differs. Costs "
                    "nothing unless --generate or --img2img. Exit status: 0 when everything "
                    "the daemon needs works, 1 when not, 2 when the check could not run.")
    add_upstream_options(parser, argparse.SUPPRESS)
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        default=argparse.SUPPRESS, help="the daemon's own log lines "
                        "(default: errors only; the findings say the rest)")
    parser.add_argument("--generate", action="store_true",
                        help="also run ONE small generation (spends it; asks first) and check "
                             "the status literals, image hosts and image it brings; and one "
                             "on each other configured provider (Midjourney, Stability AI, "
                             "A1111, OpenAI-compatible), each named before it is spent")
    parser.add_argument("--img2img", action="store_true",
                        help="also try the unconfirmed image-to-image endpoint with one job "
                             "(spends it) and say whether to set img2img = true")
    parser.add_argument("--yes", action="store_true",
                        help="spend without asking (needed when not on a terminal)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--record", metavar="DIR", type=Path,
                        help="write every exchange of the run to DIR, tokens, cookies and "
                             "identities redacted (attach it to a bug report; "
                             "`--sandbox --replay DIR` replays it)")


def main(args: argparse.Namespace, settings_from: Callable[..., Settings]) -> int:
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    logs.setup(getattr(args, "log_level", None) or "error")   # the findings say it all
    options = Options(generate=args.generate, img2img=args.img2img)
    if options.spends and not _agreed(settings, options, args.yes):
        return 2
    try:
        return asyncio.run(_check(settings, options, args))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted.", file=sys.stderr)
        return 130
    except OSError as exc:   # the data directory (the anonymous identity), or --record's
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"{PROG}: {exc.strerror or exc}{where}.", file=sys.stderr)
        return 2


def _agreed(settings: Settings, options: Options, yes: bool) -> bool:
    """Say what will be spent before spending it; ask, unless told (or nothing is spent)."""
    jobs = [describe_generation(settings)] if options.generate else []
    if options.img2img:
        jobs.append(describe_generation(settings, img2img=True))
    where = "the sandbox (nothing is spent)" if settings.sandbox else \
        f"{settings.base_url}: this spends {len(jobs)} generation{'s' if len(jobs) > 1 else ''}" \
        " of the identity's quota"
    # the configured providers are real ones even in the sandbox (it adds emulated ones)
    others = [describe(cfg) for cfg in generating(settings)] if options.generate else []
    also = f"; and one image to each of {', '.join(others)}, spending one generation " \
        "there" if others else ""
    if options.generate and settings.sandbox and settings.sandbox_providers:
        also += "; and one to each emulated provider (nothing is spent)"
    print(f"{PROG}: will send {' and '.join(jobs)} to {where}{also}.", file=sys.stderr)
    if yes or (settings.sandbox and not others):
        return True
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        print(f"{PROG}: not on a terminal, so nobody can confirm: pass --yes to spend it. "
              "Nothing was sent.", file=sys.stderr)
        return False
    print("Go ahead? [y/N] ", end="", file=sys.stderr, flush=True)   # stdout is the report
    answer = sys.stdin.readline()
    if answer.strip().lower() in ("y", "yes"):
        return True
    print(f"{PROG}: nothing was sent.", file=sys.stderr)
    return False


async def _check(settings: Settings, options: Options, args: argparse.Namespace) -> int:
    identities = identities_for(settings)
    logs.add_secrets(*settings.secrets(), *(i.secret for i in identities))
    recorder = Recorder()
    mode = "live"
    async with AsyncExitStack() as stack:
        if settings.sandbox:
            from ..app import sandbox_settings
            from ..sandbox.providers import emulated_providers
            from ..sandbox.replay import start_sandbox

            sandbox = await start_sandbox(settings.sandbox_generation_time,
                                          settings.sandbox_replay)
            stack.push_async_callback(sandbox.close)
            others = await stack.enter_async_context(emulated_providers(settings))
            settings = sandbox_settings(settings, sandbox.url or "", others)
            mode = f"sandbox, replaying {settings.sandbox_replay}" if settings.sandbox_replay \
                else "sandbox"
        if not args.json:
            print(f"{PROG}: {settings.base_url} ({mode}) with "
                  f"{', '.join(i.name for i in identities)}", flush=True)
        report = await run_check(settings, identities, options, recorder=recorder, mode=mode,
                                 on_finding=None if args.json else _print)
    if args.record is not None:
        redactor = Redactor({
            **{i.secret: f"<{'anonymous-identity' if i.anonymous else i.label}>"
               for i in identities},
            **({settings.cf_clearance.get_secret_value(): "<cf_clearance>"}
               if settings.cf_clearance else {})})
        write_record(args.record, recorder.exchanges, recorder.started,
                     _summary(settings, options, report), redactor)
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        _conclude(report, args.record, len(recorder.exchanges))
    return 0 if report.ok else 1


def _print(finding: Finding) -> None:
    print(finding.text(), flush=True)


def _conclude(report: Report, record: Path | None, exchanges: int) -> None:
    lines = report.proposal.lines()
    if lines:
        print("\nAdd to arting.toml:")
        for line in lines:
            print(f"    {line}")
        for key, env in report.proposal.overridden().items():
            print(f"    ({key} is set by {env} in the environment, which wins over "
                  "arting.toml: change it there)")
    print(f"\n{report.summary()} Checked in {report.duration:.1f} s.")
    if record is not None:
        print(f"Recorded {exchanges} exchanges in {record} (tokens, cookies and identities "
              "redacted).")


def _summary(settings: Settings, options: Options, report: Report) -> dict:
    """What the record says about the run: no secret, only what shapes the exchanges."""
    return {
        "tool": PROG, "version": __version__,
        "options": {"generate": options.generate, "img2img": options.img2img},
        "settings": {
            "base_url": settings.base_url, "identities": report.target["identities"],
            "cf_clearance": "set" if settings.cf_clearance else "unset",
            "cf_solver": settings.cf_solver, "user_agent": settings.user_agent,
            "origin": settings.origin, "referer": settings.referer,
            "image_hosts": settings.image_hosts, "done_statuses": settings.done_statuses,
            "failed_statuses": settings.failed_statuses, "img2img": settings.img2img,
            "img2img_transport": settings.img2img_transport,
            "request_timeout": settings.request_timeout, "run_timeout": settings.run_timeout,
        },
        "report": report.to_json(),
    }
