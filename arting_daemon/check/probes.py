"""The checks that cost nothing: Cloudflare, each identity, the envelope, and whether the
image-to-image endpoint seems to exist — all by polls of a job id no job has (the
daemon's own token probe), never a create.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Settings
from ..errors import (ArtingError, BadUpstreamResponse, CloudflareBlocked, UpstreamAuthError,
                      UpstreamRateLimited)
from ..recording import Exchange
from ..providers.arting.client import PROBE_REQUEST_ID, ArtingClient
from .context import (Context, Identity, api_answer, cloudflare_kind, describe, envelope,
                      is_success, shape)

CLEARANCE_PLACEHOLDER = "<the cf_clearance cookie of a browser that passed the check>"
AGENT_PLACEHOLDER = "<that browser's exact User-Agent>"
FRESH_TOKEN = "<a fresh token: arting.ai, F12, Network, the Authorization header>"
LOGIN_TOKEN = "<a token from a logged-in arting.ai session: F12, Network, Authorization>"


#: Appended to ``base_url`` for a poll of a path that surely does not exist: how Arting
#: answers that tells an answer from its poll endpoint from an answer for a missing one.
NO_SUCH_PATH = "/arting-2api-check/no-such-path"


@dataclass
class Probe:
    identity: Identity
    outcome: str        # accepted, refused, rate_limited, cloudflare, not_envelope, no_answer
    error: ArtingError | None
    answer: Exchange | None
    exchanges: list[Exchange]

    @property
    def shape(self) -> tuple:
        return shape(self.answer)


async def probe(ctx: Context, client: ArtingClient, identity: Identity,
                step: str | None = None) -> Probe:
    """One poll of a job id no job has, with ``identity``: Arting's envelope (the id
    refused) proves the identity gets in."""
    with ctx.recorder.step(step or identity.label) as made:
        try:
            await client.check_token(identity.secret)
            error = None
        except ArtingError as exc:
            error = exc
    for exchange in made:
        kind = cloudflare_kind(exchange)
        if kind:
            exchange.outcome = f"cloudflare:{kind}"
    answer = api_answer(made)
    outcome = _outcome(error, answer)
    if answer is not None and not answer.outcome:
        answer.outcome = outcome
    return Probe(identity, outcome, error, answer, made)


def _outcome(error: ArtingError | None, answer: Exchange | None) -> str:
    if isinstance(error, CloudflareBlocked):
        return "cloudflare"
    if isinstance(error, UpstreamAuthError):
        return "refused"
    if isinstance(error, UpstreamRateLimited):
        return "rate_limited"
    if isinstance(error, BadUpstreamResponse):
        return "not_envelope"
    if error is not None:
        return "no_answer"
    payload = envelope(answer)
    return "accepted" if payload is not None and "code" in payload else "not_envelope"


async def check_identities(ctx: Context, identities: list[Identity]
                           ) -> tuple[ArtingClient | None, list[Probe]]:
    """Cloudflare first (from the first poll), then every identity. Returns the client to
    go on with (None when Cloudflare keeps Arting out of reach) and the probes."""
    start = ctx.client()
    first = await probe(ctx, start, identities[0])
    client = await check_cloudflare(ctx, start, first)
    if client is None:
        ctx.report.add("tokens", "info", "not checked: Cloudflare answers instead of Arting.")
        return None, []
    if first.outcome == "cloudflare":       # passed on a second try (cf_solver switched on)
        first = await probe(ctx, client, identities[0])
    ctx.absent = await probe(ctx, ctx.client(base_url=ctx.settings.base_url + NO_SUCH_PATH),
                             identities[0], "no such path")
    if ctx.absent.answer is not None:
        ctx.absent.answer.outcome = "absent"
    probes = [first] + [await probe(ctx, client, i) for i in identities[1:]]
    _report_identities(ctx, probes)
    return client, probes


async def check_cloudflare(ctx: Context, client: ArtingClient,
                           first: Probe) -> ArtingClient | None:
    """What Cloudflare did to the first poll, and whether the configured clearance or
    cloudscraper gets past it. Returns the client that gets through, or None."""
    settings, report = ctx.settings, ctx.report
    met = next(filter(None, (cloudflare_kind(e) for e in first.exchanges if e.via == "aiohttp")),
               None)
    final = first.error.kind if isinstance(first.error, CloudflareBlocked) else None
    configured = settings.cf_clearance is not None
    if met is None and final is None:
        if configured:
            await _clearance_needed(ctx, first)
        else:
            report.add("cloudflare", "ok", "no challenge or block: Arting's API answered directly.")
        return client
    if final is None:           # a challenge, passed by cloudscraper
        said = ("Cloudflare showed a browser challenge; cloudscraper passed it, as the daemon "
                "does by itself (cf_solver = true). If that stops working, see `cf_clearance` "
                "in the documentation's Troubleshooting (docs/troubleshooting.md).")
        if configured:
            said = ("The configured cf_clearance was not accepted (it expires, and works only "
                    "with the User-Agent of the browser it came from): remove it or copy a "
                    "fresh one. " + said)
        report.add("cloudflare", "warn", said, kind=met, solved_by="cloudscraper")
        return client
    if final == "challenge":
        if not settings.cf_solver:
            solving = ctx.client(cf_solver=True)
            if (await probe(ctx, solving, first.identity, "cloudflare")).outcome != "cloudflare":
                report.add("cloudflare", "fail", "Cloudflare shows a browser challenge, which "
                           "cloudscraper passes, but cf_solver is off.",
                           [report.proposal.set("cf_solver", True)], kind="challenge")
                return solving
        reason = client.solver.last_reason or "it did not get Arting's answer"
        said = (f"Cloudflare shows a browser challenge that cloudscraper cannot pass ({reason}). "
                "Pass it once in a browser on this machine, then copy that browser's "
                "cf_clearance cookie and its exact User-Agent.")
        if configured:
            said = "The configured cf_clearance is no longer accepted. " + said
        report.add("cloudflare", "fail", said,
                   [report.proposal.set("cf_clearance", CLEARANCE_PLACEHOLDER),
                    report.proposal.set("user_agent", AGENT_PLACEHOLDER)],
                   kind="challenge", http_status=_first_status(first))
        return None
    advice = {
        "firewall": ("Cloudflare blocks this machine's address (error 1020, a firewall rule). "
                     "No setting of the daemon changes that: another network or proxy is "
                     "needed."),
        "rate_limit": ("Cloudflare rate-limits this address (error 1015); wait, then run the "
                       "check again."),
        "origin_error": ("Cloudflare could not reach Arting's servers (its 5xx page): Arting "
                         "is down or overloaded; try again later."),
    }
    report.add("cloudflare", "fail", advice.get(final, f"Cloudflare answered ({final})."),
               kind=final, http_status=_first_status(first))
    return None


async def _clearance_needed(ctx: Context, first: Probe) -> None:
    """With a configured cf_clearance and no challenge: would there be one without it?"""
    bare = await probe(ctx, ctx.client(cf_clearance=None, cf_solver=False), first.identity,
                       "cloudflare")
    if isinstance(bare.error, CloudflareBlocked) and bare.error.kind == "challenge":
        ctx.report.add("cloudflare", "ok", "the configured cf_clearance passes: without it "
                       "Cloudflare shows a browser challenge. It expires: when this check "
                       "fails on it, copy a fresh one.", clearance="needed")
    else:
        ctx.report.add("cloudflare", "ok", "no challenge or block, even without the configured "
                       "cf_clearance: it is not needed now (keeping it does no harm).",
                       clearance="not needed")


def _first_status(probe: Probe) -> int | None:
    return next((e.status for e in probe.exchanges if e.status is not None), None)


def _report_identities(ctx: Context, probes: list[Probe]) -> None:
    settings, report = ctx.settings, ctx.report
    refused = [p for p in probes if p.outcome == "refused"]
    token_line = [report.proposal.set("auth_tokens", _replace_refused(probes))] if refused \
        else []
    for p in probes:
        said = describe(p.answer)
        data = {"outcome": p.outcome, "answer": said}
        if p.outcome == "accepted" and p.shape == ctx.absent.shape:
            report.add(p.identity.name, "warn", f"the poll was answered ({said}) as a path that "
                       "does not exist is: if jobs fail with \"not found\", check base_url "
                       f"({settings.base_url}).", **data)
        elif p.outcome == "accepted":
            report.add(p.identity.name, "ok", "accepted: a poll of a job id that does not exist "
                       f"was answered by Arting ({said}).", **data)
        elif p.outcome == "refused":
            where = ("no token is configured and Arting refuses the guest identity: set a "
                     "token" if p.identity.anonymous else
                     "replace it in auth_tokens (or ARTING_AUTH_TOKEN)")
            report.add(p.identity.name, "fail", f"refused by Arting ({said}): {where}. "
                       "Copy the `Authorization` value of a request to api.arting.ai from a "
                       "browser session on arting.ai (F12, Network).", token_line, **data)
        elif p.outcome == "rate_limited":
            wait = p.error.retry_after if p.error else None
            report.add(p.identity.name, "warn", f"rate-limited ({said}"
                       + (f", retry after {wait:g} s" if wait else "") + "): the daemon rests "
                       "it and tries it again later.", **data)
        elif p.outcome == "not_envelope":
            default = Settings.model_fields["base_url"].default
            lines = [report.proposal.set("base_url", default)] \
                if settings.base_url != default else []
            report.add(p.identity.name, "fail", f"the answer is not Arting's JSON envelope "
                       f"({said}): is base_url ({settings.base_url}) right?", lines, **data)
        else:
            report.add(p.identity.name, "fail", "no usable answer: "
                       + (p.error.message if p.error else said), **data)
    if probes and all(p.outcome == "rate_limited" for p in probes):
        report.add("tokens", "fail", "every identity is rate-limited right now: the daemon "
                   "could not create a job; try again later, or add tokens.")


def _replace_refused(probes: list[Probe]) -> list[str]:
    """auth_tokens with the refused entries marked for replacing (the others by label:
    the check never prints a token)."""
    if len(probes) == 1 and probes[0].identity.anonymous:
        return [LOGIN_TOKEN]
    return [FRESH_TOKEN if p.outcome == "refused" else f"<{p.identity.label}>" for p in probes]


def report_envelope(ctx: Context) -> None:
    """The envelope of every answer to a JSON call: its keys, and how errors come."""
    answers = [(e, envelope(e)) for e in ctx.recorder.exchanges
               if e.via == "aiohttp" and isinstance(e.request_body, dict)
               and e.status is not None and cloudflare_kind(e) is None
               and e.outcome not in ("missing", "absent")]
    objects = [(e, p) for e, p in answers if p is not None]
    if not objects:
        return
    keys = sorted(set().union(*(p.keys() for _, p in objects)))
    errors = [(e, p) for e, p in objects if "code" in p and not is_success(p)]
    seen = list(dict.fromkeys(describe(e) for e, _ in errors))
    statuses = sorted({e.status for e, _ in errors if e.status is not None})
    data = {"keys": keys, "errors": seen, "error_http_statuses": statuses}
    shape = "{" + ", ".join(keys) + "}"
    if any("code" not in p for _, p in objects):
        ctx.report.add("envelope", "warn", f"some answers are JSON without a `code` ({shape}): "
                       "the daemon takes those for malformed answers.", **data)
    elif not errors:
        ctx.report.add("envelope", "info", f"answers are {shape}; no error answer seen.", **data)
    elif statuses == [200]:
        ctx.report.add("envelope", "info", f"answers are {shape}; errors come as HTTP 200 with "
                       f"a code ({'; '.join(seen)}).", **data)
    else:
        ctx.report.add("envelope", "info", f"answers are {shape}; errors come as HTTP "
                       f"{', '.join(map(str, statuses))} with the envelope, not as HTTP 200 "
                       f"({'; '.join(seen)}). The daemon reads both: nothing to change.",
                       **data)


async def hint_img2img(ctx: Context, client: ArtingClient, accepted: Probe) -> None:
    """Is a poll of the image-to-image endpoint answered like one of the text-to-image
    endpoint, or like one of a path that does not exist? A hint only: ``--img2img``
    settles it with a generation."""
    with ctx.recorder.step("image-to-image") as made:
        try:
            await client.poll(PROBE_REQUEST_ID, accepted.identity.secret, img2img=True)
        except ArtingError:
            pass
    answer = api_answer(made)
    present = shape(answer) == accepted.shape != ctx.absent.shape
    if answer is not None:
        answer.outcome = "present" if present else "missing"
    said = describe(answer)
    if present:
        ctx.report.add("image-to-image", "info", f"a poll of its endpoint was answered as the "
                       f"text-to-image one is ({said}): it seems to exist. `arting-daemon "
                       "check --img2img` tries it with one generation.", answer=said,
                       seems="present")
        return
    like = "as a path that does not exist is" if shape(answer) == ctx.absent.shape else \
        f"otherwise than text-to-image ({describe(accepted.answer)})"
    level = "warn" if ctx.settings.img2img else "info"
    ctx.report.add("image-to-image", level, f"a poll of its endpoint was answered {like} "
                   f"({said}): it seems missing."
                   + (" img2img is on: `arting-daemon check --img2img` settles it."
                      if ctx.settings.img2img else " Keep img2img off."),
                   answer=said, seems="missing")
