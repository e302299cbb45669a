"""``--generate`` on the other providers: one small image from each, made as the daemon
makes it (the provider's own attempt: submit, follow, fetch), so the check proves the
whole way a job takes there, not only that the provider answers.

It spends one generation per provider (a Midjourney imagine, a Stability AI call, an
OpenAI-compatible server's image), which ``arting-daemon check`` says, naming each,
before it asks. A provider's images stay out of the daemon's store: the check keeps
them in a directory of its own for the run.
"""

from __future__ import annotations

import asyncio
import io
import time

from PIL import Image

from ..config import Settings
from ..errors import ArtingError, BadUpstreamResponse, StageTimeout
from ..generation import Catalog, Rules, build_generation
from ..provider_config import ProviderConfig
from ..providers.base import LoneWork, Provider
from ..providers.kinds import installed
from ..providers.remote import SyncProvider
from .generate import PROMPT, SIZE
from .report import Report
from ..tasks import wait_for

#: Seconds a cancel of a job the check gave up on may take.
CANCEL_WAIT = 5.0


def generating(settings: Settings) -> list[ProviderConfig]:
    """The providers besides Arting that ``--generate`` makes an image on."""
    return [p for p in settings.providers if p.kind != "arting"]


def describe(cfg: ProviderConfig) -> str:
    """How the question before spending names a provider."""
    model = configured_model(cfg)
    return f"{cfg.name} ({cfg.kind}{f', model {model}' if model else ''})"


def configured_model(cfg: ProviderConfig) -> str | None:
    """The model the check asks for, where the settings say (else the upstream's
    first, or an A1111's loaded checkpoint)."""
    if cfg.default_model:
        return cfg.default_model
    if isinstance(cfg.models, list) and cfg.models:
        return cfg.models[0]
    kind = installed().get(cfg.kind)
    return next(iter(kind.models), None) if kind is not None else None


async def check_generation(settings: Settings, provider: Provider, cfg: ProviderConfig,
                           report: Report) -> None:
    """One small image from ``provider``: a ``<name> generate`` finding."""
    topic = f"{cfg.name} generate"
    started = time.monotonic()
    try:
        model = configured_model(cfg)
        if model is None and cfg.kind == "openai" and isinstance(provider, SyncProvider):
            model = next(iter(await provider.catalogue()), None)
        rules = Rules.of(settings)
        gen = build_generation(rules, Catalog(rules), prompt=PROMPT, size=SIZE, nsfw=False)
        work = LoneWork(f"check-{cfg.name}", gen.model_copy(update={"model": model or ""}),
                         cfg.name)
        provider.admit(work.generation)
        images = await _run(provider, work, settings.run_timeout)
        sizes = await asyncio.to_thread(lambda: [_size(i) for i in images])
    except ArtingError as exc:      # its words say what to set, where
        report.add(topic, "fail", exc.message, error=exc.code)
        return
    took = time.monotonic() - started
    shown = ", ".join(f"{w}×{h}" for w, h in sizes)
    report.add(topic, "ok", f"{len(images)} image{'s' if len(images) > 1 else ''} ({shown}) "
               f"from {f'model {model}' if model else 'its loaded model'} in {took:.1f} s.",
               model=model, sizes=sizes, seconds=round(took, 1))


async def _run(provider: Provider, work: LoneWork, limit: float) -> list[bytes]:
    """Submit, follow and fetch, as the runner does, within ``limit`` seconds; a job
    given up on is cancelled upstream (best effort)."""
    async def run() -> list[bytes]:
        async with provider.attempt(work, time.time() + limit) as attempt:
            work.submitted_at = await attempt.submit()
            outputs = await attempt.follow(lambda fraction: None)
        return [await provider.fetch(work, output) for output in outputs]
    try:
        return await wait_for(run(), limit)
    except asyncio.TimeoutError:
        if provider.submitted(work):
            try:
                await wait_for(provider.cancel(work), CANCEL_WAIT)
            except (ArtingError, asyncio.TimeoutError):
                pass
        raise StageTimeout(f"{provider.label} made no image within {limit:g} s "
                           "(run_timeout).") from None


def _size(data: bytes) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception as exc:  # Pillow raises many kinds for many formats
        raise BadUpstreamResponse(f"its image does not decode ({type(exc).__name__}).",
                                  retryable=False) from None
