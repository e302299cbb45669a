"""Job events over a WebSocket: ``GET /arting/v1/ws``.

One connection follows any number of jobs. The client sends ``{"subscribe": [ids]}``
(and ``{"unsubscribe": [ids]}``) and gets, for each job, the events of
``/jobs/{id}/events``: ``{"event": "job", "job": {...}}`` on every change and every
second while it runs, the last one with its final state. ``{"submit": {...}, "ref": r}``
submits a job as ``POST /jobs`` does (``idempotency_key`` as that header) and follows it,
first answering ``{"event": "submitted", "ref": r, "job": {...}}``. A problem is
``{"event": "error", "error": {...}}`` (OpenAI's error object, with the ``id`` or ``ref``
it concerns) and leaves the connection open. The server pings every ``PING_EVERY``
seconds and drops a client that stops answering. Jobs go on when the connection ends.

Auth is the API's: an ``Authorization`` header on the upgrade request or, for browsers,
which cannot set one, a first message ``{"auth": "<key>"}`` within ``AUTH_WAIT`` seconds
(never a key in the URL). Then the server says ``{"event": "ready"}``; a refused key
ends the connection with close code 4401. A user key is checked again at every message,
and its revocation or expiry ends the connection at once, idle or not (an error event,
then close code 4401 with the reason ``key revoked`` or ``key expired``;
``keys/revocation.py``). A page of another origin (its ``Origin`` header) is refused on
the handshake (``origin.py``), unless ``cors_origins`` lists it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any, Literal

from aiohttp import WSMsgType, web
from pydantic import BaseModel, Field, SkipValidation, ValidationError

from ..auth import credentials, public, resolve, resolve_key
from ..engine.jobs import Job
from ..errors import ArtingError, InvalidRequest, Unauthorized
from ..openapi import Doc, operation
from ..state import ENGINE, FOLLOWERS, GATE, PRINCIPAL, REVOCATION, SETTINGS, WS_CLIENTS
from . import openai_errors
from .http import Answer, Sparse, parse_json, parse_model
from .job_requests import GenerateRequest, UpscaleRequest
from .jobs import TICK, find_job, submit_job
from .views import JobView, job_view

PING_EVERY = 20.0
AUTH_WAIT = 10.0
#: Jobs one connection may follow at once.
MAX_FOLLOWED = 100
#: Close code for a refused key (4000-4999 are the application's; 4401 mirrors HTTP 401).
UNAUTHORIZED = 4401


# --- the messages ------------------------------------------------------------------------

JobIds = list[Annotated[str, Field(min_length=1)]]


class WsAuth(BaseModel):
    """The first message, when the upgrade request had no ``Authorization`` header."""

    auth: str = Field(description="An API key (a `Bearer ` prefix is allowed).")


class WsSubscribe(BaseModel):
    subscribe: JobIds = Field(description="Follow these jobs (a user key: its own).")


class WsUnsubscribe(BaseModel):
    unsubscribe: JobIds


class WsSubmit(BaseModel):
    """Submit a job as ``POST /jobs`` does, and follow it."""

    #: Validated as ``POST /jobs`` validates its body (``submit_job``).
    submit: SkipValidation[GenerateRequest | UpscaleRequest]
    ref: Any = Field(None, description="Anything; the answers about this job carry it.")
    idempotency_key: str | None = Field(None, description="As `POST /jobs`'s "
                                                          "`Idempotency-Key` header.")


class WsReady(Answer):
    event: Literal["ready"] = "ready"


class WsJob(Answer):
    """The job as ``GET /jobs/{id}`` shows it: on subscribing, on every change and every
    second while it runs; the last one has its final state."""

    event: Literal["job"] = "job"
    job: JobView


class WsSubmitted(Answer):
    event: Literal["submitted"] = "submitted"
    ref: Any = Field(description="The `ref` of the submit.")
    job: JobView


class WsError(Sparse):
    """A problem with a message; the connection stays open (a refused, revoked or
    expired key closes it)."""

    event: Literal["error"] = "error"
    id: str | None = Field(None, description="The job it concerns.")
    ref: Any = Field(None, description="The submit it concerns.")
    error: openai_errors.ErrorDetail


MESSAGES = (
    'Messages are JSON text. The client sends `{"auth": "<key>"}` (first, when the upgrade '
    'had no `Authorization` header), `{"subscribe": [ids]}`, `{"unsubscribe": [ids]}` or '
    '`{"submit": {a POST /jobs body}, "ref": …, "idempotency_key": …}`; the server answers '
    '`{"event": "ready"}` once the caller is known, `{"event": "job", "job": {…}}` for each '
    'followed job (as its event stream does), `{"event": "submitted", "ref": …, "job": {…}}` '
    'and `{"event": "error", "id"/"ref": …, "error": {…}}` (the connection stays open). A '
    f"refused key closes it with code {UNAUTHORIZED}, as does a key revoked or expired "
    "while it is open (an error event first; the close reason `key revoked` or `key "
    "expired`). The server pings every "
    f"{PING_EVERY:g} s. `x-websocket` holds both sides' schemas (`WsAuth` … `WsError`).")


@operation("Follow jobs over a WebSocket", "Upgrades to a WebSocket that follows any "
           "number of jobs and submits them. Auth: the `Authorization` header on the "
           "upgrade, or a first message `{\"auth\": \"<key>\"}` (browsers; never a key "
           "in the URL). A page of another origin is refused unless `cors_origins` lists "
           "it. " + MESSAGES,
           answers={101: Doc(media="", description="Switching to the WebSocket protocol.",
                             headers={"Upgrade": "`websocket`"})},
           errors=(400, 403), messages_in=WsAuth | WsSubscribe | WsUnsubscribe | WsSubmit,
           messages_out=WsReady | WsJob | WsSubmitted | WsError)
@public   # checked here: the key may come in the first message
async def websocket(request: web.Request) -> web.WebSocketResponse:
    settings = request.config_dict[SETTINGS]
    ws = web.WebSocketResponse(heartbeat=PING_EVERY,
                               max_msg_size=int(settings.max_body_mb * 1024 * 1024))
    if not ws.can_prepare(request).ok:
        raise InvalidRequest("This is a WebSocket endpoint: connect with a WebSocket client "
                             "(Upgrade: websocket).")
    await ws.prepare(request)
    session = _Session(request, ws)
    clients = request.config_dict[WS_CLIENTS]
    clients.add(session)
    try:
        await session.run()
    finally:
        clients.discard(session)
        await session.close()
    return ws


class _Session:
    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.request = request
        self.ws = ws
        self.engine = request.config_dict[ENGINE]
        self.followed: dict[str, asyncio.Task] = {}
        self._sending = asyncio.Lock()

    async def run(self) -> None:
        if not await self._authorized():
            return
        revocation = self.request.config_dict[REVOCATION]
        with revocation.hold(self.request[PRINCIPAL]) as hold:
            try:
                await self.send(WsReady())
                async for message in hold.until(self.ws):
                    revocation.check(hold)         # the key, at every message
                    if message.type is WSMsgType.TEXT:
                        await self._handle(message.data)
                    elif message.type is WSMsgType.BINARY:
                        await self._error(InvalidRequest("Send JSON text messages."))
            except Unauthorized as err:            # revoked or expired meanwhile
                await self._refuse(err, hold.reason)

    async def close(self) -> None:
        tasks = list(self.followed.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.ws.close()

    async def send(self, message: Answer) -> None:
        async with self._sending:
            await self.ws.send_str(message.model_dump_json(by_alias=True))

    # --- auth -------------------------------------------------------------------------

    async def _authorized(self) -> bool:
        """Who is calling, from the upgrade's header or the first message; the request
        then carries them (``principal``) as any other request of the API does."""
        try:
            self.request[PRINCIPAL] = await resolve(self.request)
            return True
        except Unauthorized as err:
            if credentials(self.request)[1]:       # a header, and a wrong one
                return await self._refuse(err)
        try:
            message = await self.ws.receive(timeout=AUTH_WAIT)
        except asyncio.TimeoutError:
            return await self._refuse(Unauthorized(
                f"This daemon needs an API key: send {{\"auth\": \"<key>\"}} within "
                f"{AUTH_WAIT:g} s of connecting (or `Authorization: Bearer <key>` with the "
                "upgrade request)."))
        key = ""
        if message.type is WSMsgType.TEXT:
            with contextlib.suppress(ValidationError):
                key = WsAuth.model_validate_json(message.data).auth
        try:
            secret = key.removeprefix("Bearer ").strip()
            self.request[PRINCIPAL] = await resolve_key(self.request, secret)
            return True
        except Unauthorized as err:
            return await self._refuse(err)

    async def _refuse(self, err: Unauthorized, reason: str = "unauthorized") -> bool:
        if not self.ws.closed:
            with contextlib.suppress(ConnectionResetError):
                await self._error(err)
            await self.ws.close(code=UNAUTHORIZED, message=reason.encode())
        return False

    # --- messages ---------------------------------------------------------------------

    async def _handle(self, text: str) -> None:
        try:
            data = parse_json(text, "A message")
        except InvalidRequest as err:
            await self._error(err)
            return
        if not isinstance(data, dict):
            await self._error(InvalidRequest("Each message must be a JSON object."))
            return
        try:
            if "subscribe" in data:
                for job_id in parse_model(WsSubscribe, data).subscribe:
                    try:
                        await self._follow(job_id)
                    except ArtingError as err:
                        await self._error(err, id=job_id)
            elif "unsubscribe" in data:
                for job_id in parse_model(WsUnsubscribe, data).unsubscribe:
                    task = self.followed.pop(job_id, None)
                    if task is not None:
                        task.cancel()
            elif "submit" in data:
                await self._submit(parse_model(WsSubmit, data))
            elif "auth" not in data:      # a key sent again is no news
                raise InvalidRequest("Unknown message: send subscribe, unsubscribe or "
                                     "submit.")
        except ArtingError as err:
            await self._error(err, ref=data.get("ref"))

    async def _submit(self, message: WsSubmit) -> None:
        if len(self.followed) >= MAX_FOLLOWED:
            raise self._too_many()
        await self.request.config_dict[GATE].request(self.request[PRINCIPAL])  # @generates
        key = message.idempotency_key or None
        job, _ = await submit_job(self.request, message.submit, key)
        view = job_view(self.request, self.engine, job)
        await self.send(WsSubmitted(ref=message.ref, job=view))
        await self._follow(job.id)

    async def _follow(self, job_id: str) -> None:
        if job_id in self.followed:
            return
        if len(self.followed) >= MAX_FOLLOWED:
            raise self._too_many()
        job = await find_job(self.request, job_id)
        self.followed[job.id] = asyncio.create_task(self._events(job),
                                                    name=f"ws-follow-{job.id}")

    async def _events(self, job: Job) -> None:
        try:
            with self.request.config_dict[FOLLOWERS].following(job):
                async for current in self.engine.changes(job, tick=TICK):
                    await self.send(WsJob(job=job_view(self.request, self.engine, current)))
        except ArtingError as err:     # this daemon stops: the client follows it elsewhere
            with contextlib.suppress(ConnectionResetError):
                await self._error(err, id=job.id)
        except ConnectionResetError:
            pass  # the client left; the job goes on
        finally:
            if self.followed.get(job.id) is asyncio.current_task():
                del self.followed[job.id]

    async def _error(self, err: ArtingError, id: str | None = None, ref: Any = None) -> None:
        await self.send(WsError(id=id, ref=ref, error=openai_errors.detail(err)))

    @staticmethod
    def _too_many() -> InvalidRequest:
        return InvalidRequest(f"One connection follows at most {MAX_FOLLOWED} jobs at once; "
                              "unsubscribe from some, or open another connection.")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ws", websocket)

