"""``GET /arting/v1/status``: the daemon's state, and the providers' health.

The operator (and the local user, with no keys) sees everything; a user key sees what is
its own and what it needs — that the service answers, what it offers, its own jobs in
the queue and their last outcomes — and nothing of the tokens, balances, providers, other
users' jobs or the daemon's totals (``UserStatusView``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from aiohttp import web
from pydantic import Field

from .. import __version__
from ..auth import principal
from ..engine.jobs import Job, JobState
from ..engine.runner import Runner
from ..openapi import operation
from ..state import ENGINE, EVENTS, KEYS, PROVIDER, RETENTION, SETTINGS, WS_CLIENTS
from .http import Answer, Sparse, reply
from .intake import offers
from .ops import TokenView
from .views import Caller, JobCounts, JobError, caller_of


class QueueView(Answer):
    active: int
    queued: int
    max_active: int
    max_queued: int


class LastOutcomes(Answer):
    succeeded_at: float | None
    failed_at: float | None
    failure: JobError | None


class OwnQueue(Answer):
    """A user key's own unfinished jobs on this daemon."""

    active: int = Field(description="Its jobs being made now.")
    queued: int = Field(description="Its jobs waiting for a slot.")
    position: int | None = Field(description="The place in the queue of its first waiting "
                                             "job (1: next; null: none waits).")


class EndedJobs(JobCounts):
    cached: int = Field(description="Of those, answered from the result cache.")


class StoreView(Answer):
    """The image store, kept under ``store_max_gb`` and ``store_max_images``."""

    images: int
    bytes: int
    max_images: int | None
    max_gb: float | None
    removed: int = Field(description="Images removed to keep it under its caps since "
                                     "this daemon started.")


class ProviderView(Sparse):
    """One provider behind the router, as traffic shows it; Arting's adds ``tokens``,
    the others ``base_url`` and ``credentials``, Stability AI's its ``balance``."""

    omitted: ClassVar = frozenset({"tokens", "base_url", "credentials", "balance",
                                   "balance_at"})

    name: str
    label: str
    kind: str
    models: int = Field(description="How many models it offers.")
    prefix: str = Field(description="The prefix of its model ids (may be empty).")
    img2img: bool
    upscale: bool
    free_to_repeat: bool
    max_jobs: int | None = Field(description="Its jobs at once (null: no limit).")
    in_flight: int
    state: Literal["unknown", "ok", "refused", "unreachable", "blocked", "rate-limited",
                   "failing"] = Field(description="What its last exchange said.")
    last_error: str | None
    last_ok: float | None
    last_failure: float | None
    models_read_at: float | None = Field(description="When its catalogue was last read.")
    tokens: list[TokenView] | None = None
    base_url: str | None = None
    credentials: Literal["set", "none"] | None = None
    balance: float | None = Field(None, description="The account's credits, as its "
                                  "`GET /v1/user/balance` last said (Stability AI).")
    balance_at: float | None = Field(None, description="When the balance was read.")


class OperatorEventView(Answer):
    """Something the operator must hear (``operator_webhook_url`` gets it too)."""

    id: str = Field(description="The `webhook-id` its delivery carries.")
    event: Literal["token_refused", "low_balance", "pool_exhausted"]
    token: str | None = Field(description="The token's label (none for `pool_exhausted`).")
    message: str
    at: float


class StatusView(Sparse):
    """The daemon's state, and the providers' health: Arting's ``tokens``, and with
    ``[[providers]]`` each one's (``providers``). The operator's view (and the local
    user's); a user key sees ``UserStatusView``."""

    omitted: ClassVar = frozenset({"providers"})

    version: str
    sandbox: bool
    upstream: str
    img2img: bool = Field(description="Whether some provider does image-to-image.")
    upscale: bool = Field(description="Whether some provider upscales.")
    auth_required: bool
    caller: Caller
    tokens: list[TokenView] = Field(description="The `arting` provider's tokens (none "
                                                "without one).")
    providers: list[ProviderView] | None = None
    queue: QueueView
    jobs: EndedJobs = Field(description="Jobs ended since this daemon started.")
    last_outcomes: LastOutcomes
    store: StoreView | None = Field(description="The bounded store (null: unbounded).")
    websocket_clients: int = Field(description="Connections to `/arting/v1/ws`.")
    operator_events: list[OperatorEventView] = Field(
        description="The latest operator events (a token refused, a low balance, no usable "
                    "token), oldest first.")


class UserStatusView(Answer):
    """What a user key sees: that the service answers and what it offers, and its own
    jobs — never the tokens, balances or providers, the daemon's totals or another
    user's jobs."""

    version: str
    sandbox: bool
    img2img: bool = Field(description="Whether some provider does image-to-image.")
    upscale: bool = Field(description="Whether some provider upscales.")
    auth_required: bool
    caller: Caller
    queue: OwnQueue
    last_outcomes: LastOutcomes = Field(description="When one of its own jobs last "
                                                    "succeeded and failed.")


async def last_outcomes(engine: Runner) -> LastOutcomes:
    """When a job last succeeded and last failed (from the journal, so restarts keep it):
    the only evidence of whether Arting is reachable that costs Arting nothing."""
    return _outcomes(await engine.last_upstream(JobState.SUCCEEDED),
                     await engine.last_upstream(JobState.FAILED))


async def own_outcomes(engine: Runner, owner: str) -> LastOutcomes:
    """When one of ``owner``'s jobs last succeeded and failed."""
    succeeded = await engine.recent(1, state=JobState.SUCCEEDED.value, owner=owner)
    failed = await engine.recent(1, state=JobState.FAILED.value, owner=owner)
    return _outcomes(succeeded[0] if succeeded else None, failed[0] if failed else None)


def _outcomes(succeeded: Job | None, failure: Job | None) -> LastOutcomes:
    return LastOutcomes(
        succeeded_at=succeeded.finished_at if succeeded else None,
        failed_at=failure.finished_at if failure else None,
        failure=JobError(**failure.error.to_dict()) if failure and failure.error else None)


def own_queue(engine: Runner, owner: str) -> OwnQueue:
    jobs = engine.running(owner)
    places = [p for job in jobs if (p := engine.queue_position(job)) is not None]
    return OwnQueue(active=sum(job.state is not JobState.QUEUED for job in jobs),
                    queued=sum(job.state is JobState.QUEUED for job in jobs),
                    position=min(places, default=None))


@operation("The daemon's state", "Version, sandbox or live, features, token pool health "
           "(and with `[[providers]]` each provider's), queue, who is calling, and when a "
           "job last succeeded and failed. A user key sees only what is its own "
           "(`UserStatusView`): its jobs in the queue and their last outcomes, no token, "
           "balance, provider, total or other user's job.",
           answers={200: StatusView | UserStatusView})
async def status(request: web.Request) -> web.Response:
    settings, engine = request.config_dict[SETTINGS], request.config_dict[ENGINE]
    caller = principal(request)
    if not caller.admin:
        return reply(UserStatusView(
            version=__version__, sandbox=settings.sandbox, img2img=offers(request, "img2img"),
            upscale=offers(request, "upscale"), auth_required=True, caller=caller_of(request),
            queue=own_queue(engine, caller.id),
            last_outcomes=await own_outcomes(engine, caller.id)))
    retention = request.config_dict[RETENTION]
    return reply(StatusView(
        version=__version__, sandbox=settings.sandbox, upstream=settings.base_url,
        img2img=offers(request, "img2img"), upscale=offers(request, "upscale"),
        auth_required=settings.auth_required or request.config_dict[KEYS].in_use,
        caller=caller_of(request), **request.config_dict[PROVIDER].health(),
        queue=QueueView(active=len(engine.active), queued=engine.queued,
                        max_active=settings.max_active_jobs,
                        max_queued=settings.max_queued_jobs),
        jobs=EndedJobs(**engine.counters), last_outcomes=await last_outcomes(engine),
        store=retention and StoreView(**retention.view()),
        websocket_clients=len(request.config_dict[WS_CLIENTS]),
        operator_events=[e.view() for e in request.config_dict[EVENTS].recent]))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/status", status)
