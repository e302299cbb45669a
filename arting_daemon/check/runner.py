"""One check, start to end: reach, Cloudflare, identities, envelope, and what it may spend;
then each of the other providers (``providers.py``).

Used by ``arting-daemon check`` and, in the daemon, by ``POST /arting/v1/admin/check``
(the no-cost part only). Every exchange goes through the daemon's own Arting client,
observed by a ``Recorder``; nothing here opens a second way to talk to Arting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import datadir
from ..config import Settings
from ..recording import Recorder
from ..providers.arting.tokens import anonymous_identity
from .context import Context, Identity
from .generate import check_generate, check_img2img
from .probes import check_identities, hint_img2img, report_envelope
from ..transport.director import plan_of
from .providers import check_providers
from .reach import check_reach, check_reach_via
from .report import Finding, Report


@dataclass(frozen=True)
class Options:
    generate: bool = False      # one text-to-image job (and one on each other provider)
    img2img: bool = False       # one image-to-image job

    @property
    def spends(self) -> bool:
        return self.generate or self.img2img


def identities_for(settings: Settings) -> list[Identity]:
    """The identities the daemon would use: its tokens, else its anonymous identity."""
    tokens = [t.get_secret_value() for t in settings.auth_tokens]
    if tokens:
        return [Identity(f"token-{i + 1}", t) for i, t in enumerate(tokens)]
    datadir.prepare(settings.data_dir)          # where the daemon keeps (or makes) it
    return [Identity("anonymous", anonymous_identity(settings.data_dir), anonymous=True)]


async def run_check(settings: Settings, identities: list[Identity], options: Options = Options(),
                    *, recorder: Recorder | None = None, mode: str = "live",
                    on_finding: Callable[[Finding], None] | None = None) -> Report:
    """Check Arting as ``settings`` reach it (through the proxy they name), with
    ``identities``."""
    recorder = recorder or Recorder()
    report = Report(settings, {"base_url": settings.base_url, "mode": mode,
                               "identities": [i.name for i in identities],
                               "generate": options.generate, "img2img": options.img2img},
                    on_finding)
    ctx = Context(settings, recorder, report)
    try:
        await _check_arting(ctx, identities, options)
        await check_providers(settings, report, options.generate)
    finally:
        await ctx.close()
        report.duration = time.time() - report.started
    return report


async def _check_arting(ctx: Context, identities: list[Identity], options: Options) -> None:
    settings, report = ctx.settings, ctx.report
    proxy, limit = plan_of(settings).for_url(settings.base_url), \
        min(settings.request_timeout, 10.0)
    reached = await check_reach_via(proxy, settings.base_url, limit, report) if proxy \
        else await check_reach(settings.base_url, limit, report)
    if not reached:
        report.add("arting", "info", "nothing else checked: Arting is out of reach.")
        return
    client, probes = await check_identities(ctx, identities)
    accepted = next((p for p in probes if p.outcome == "accepted"), None)
    if client is not None and accepted is not None:
        carrier = client.director.carrier(accepted.identity.secret)
        report.add("client", "info", f"{carrier} got through.", client=carrier)
        await hint_img2img(ctx, client, accepted)
        if options.spends:
            made = await check_generate(ctx, client, accepted.identity) \
                if options.generate else None
            if options.img2img:
                await check_img2img(ctx, client, accepted.identity, made)
    elif options.spends:
        report.add("generate", "info", "not run: no identity got in, nothing was spent.")
    report_envelope(ctx)
