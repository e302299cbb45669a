"""The pool of Arting identities (tokens) and their health, learned from live traffic.

A token is *ok*, *cooling* (rate-limited until a time), *blocked* (Cloudflare stood in
the way) or *invalid* (Arting refused it). Only auth errors make a token invalid.
Jobs take the least-busy eligible token and hold it while Arting works on their job,
so each token has a bound on jobs in flight.

Arting's poll answers may carry the identity's ``remain_balance`` (§11); each token keeps
the last one seen. A token whose balance reached zero is used only when no other is
free, and a refusal it meets afterwards says so.

Tokens come from the configuration (``auth_tokens``) or are added at runtime
(``vault.py``): ``sync`` brings the pool in line with the vault without a restart. A
token removed (or rotated away) is *retired*: no new job takes it, the jobs it carries
finish with it, then it leaves the pool. The anonymous identity stands in only while
no other token is there.

Each token may be paced (``daily_limit`` images per UTC day, ``min_interval`` seconds
between creates); a token past its pace is skipped until ``paced_until``.

Unhealthy tokens are re-probed in the background with exponential backoff. A probe
is one poll (``get``) of a request id, never a create, so it costs no generation: an
answer in Arting's envelope (the job, or "task not found") proves the token passes
Arting's door; a refusal, a 429 or a Cloudflare page keeps it out for longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, TypeVar
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ... import datadir, logs
from ...clock import SYSTEM, Clock
from ...errors import (ArtingError, CloudflareBlocked, UpstreamAuthError, UpstreamRateLimited,
                       UpstreamRejected)
from ...retry import backoff
from ...tasks import stop

if TYPE_CHECKING:
    from .vault import Entry

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Bytes of the key token fingerprints are made with.
FINGERPRINT_KEY_BYTES = 32


class TokenState(str, Enum):
    OK = "ok"
    COOLING = "cooling"
    BLOCKED = "blocked"
    INVALID = "invalid"


@dataclass(eq=False)
class Token:
    label: str
    secret: str = field(repr=False)
    #: Names the token in job records (which may outlive its place in the list) and to
    #: other replicas without holding it (``fingerprint``).
    fingerprint: str
    anonymous: bool = False
    state: TokenState = TokenState.OK
    until: float = 0.0          # monotonic time an unhealthy token is tried (and probed) again
    in_flight: int = 0
    jobs_ok: int = 0
    errors: int = 0
    strikes: int = 0            # failures since the last job that went through, for the backoff
    reason: ArtingError | None = field(default=None, repr=False)   # why it is out of use
    probing: bool = False
    last_probe: float | None = None                 # wall-clock time of the last probe
    probes: Counter = field(default_factory=Counter)  # probe results: ok, failed, inconclusive
    balance: int | None = None                      # ``remain_balance`` of the last poll
    balance_at: float | None = None                 # wall-clock time it was seen
    source: str = "configuration"                   # or "runtime" (the vault's)
    mark: str | None = None                         # the vault's keyed fingerprint
    cookies: dict[str, str] = field(default_factory=dict, repr=False)
    user_agent: str | None = None                   # pasted with its cookies
    daily_limit: int | None = None                  # images per UTC day
    min_interval: float | None = None               # seconds between two creates
    retired: bool = False                           # removed: only its jobs use it
    day: str = ""                                   # the UTC day ``spent`` counts
    spent: int = 0                                  # images created that day
    last_create: float | None = None                # wall-clock time of the last create

    def eligible(self, now: float, max_jobs: int) -> bool:
        if self.state is TokenState.INVALID or self.in_flight >= max_jobs or self.retired:
            return False
        return self.state is TokenState.OK or now >= self.until

    def paced_until(self, wall: float) -> float | None:
        """When (wall-clock) its pace lets it create again, or None: now."""
        waits = []
        if self.daily_limit is not None and self.day == utc_day(wall) \
                and self.spent >= self.daily_limit:
            waits.append((int(wall) // 86400 + 1) * 86400.0)     # the next UTC midnight
        if self.min_interval and self.last_create is not None \
                and wall < self.last_create + self.min_interval:
            waits.append(self.last_create + self.min_interval)
        return max(waits) if waits else None

    def public(self, now: float, wall: float | None = None) -> dict:
        """What the operator may see: never the secret."""
        paced = self.paced_until(wall) if wall is not None else None
        return {"label": self.label, "anonymous": self.anonymous, "state": self.state.value,
                "source": self.source, "fingerprint": self.mark, "retired": self.retired,
                "cookies": sorted(self.cookies), "daily_limit": self.daily_limit,
                "min_interval": self.min_interval,
                "images_today": self.spent if wall is not None and self.day == utc_day(wall)
                else 0, "paced_until": paced,
                "retry_in": round(max(0.0, self.until - now), 1) if self.until > now else 0,
                "in_flight": self.in_flight, "jobs_ok": self.jobs_ok, "errors": self.errors,
                "last_error": self.reason.message if self.reason else None,
                "last_probe": self.last_probe,
                "probes": dict(self.probes),
                "balance": self.balance, "balance_at": self.balance_at}


def _pick(own: T | None, default: T | None) -> T | None:
    return own if own is not None else default


def _when(wall: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(wall))


def utc_day(wall: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(wall))


def _unavailable(token: Token, wait: float) -> ArtingError:
    """Why no token can be used for ``wait`` seconds, in the words of ``token``'s trouble."""
    if isinstance(token.reason, CloudflareBlocked):
        return CloudflareBlocked(token.reason.message, kind=token.reason.kind)
    last = f" (last answer: {token.reason.message})" if token.reason else ""
    return UpstreamRateLimited(f"Arting is rate-limiting every token{last}; try again in "
                               f"{wait:.0f} s.", retry_after=max(1.0, wait))


def fingerprint(key: bytes, secret: str) -> str:
    """A token's name in records: the start of its HMAC-SHA-256 under ``key``. Unlike a
    bare hash, it cannot be checked against guesses of a weak token without the key."""
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()[:16]


def fingerprint_key(data_dir: Path) -> bytes:
    """The key fingerprints are made with: random, made once per data directory and kept
    in ``fingerprint.key`` (private, as every file there)."""
    path = data_dir / "fingerprint.key"
    for _ in range(2):
        try:
            key = bytes.fromhex(path.read_text())
            if len(key) == FINGERPRINT_KEY_BYTES:
                return key
            break
        except FileNotFoundError:
            datadir.create(path, secrets.token_hex(FINGERPRINT_KEY_BYTES).encode())
        except (OSError, ValueError):               # unreadable: start anew
            break
    key = secrets.token_bytes(FINGERPRINT_KEY_BYTES)
    datadir.write(path, key.hex().encode())
    return key


def anonymous_identity(data_dir: Path) -> str:
    """A UUID created once and kept, so we look like one returning guest, not many
    (replicas on one data directory included: the first to make it wins)."""
    path = data_dir / "identity.json"
    for _ in range(2):
        try:
            return str(uuid.UUID(json.loads(path.read_text())["uuid"]))
        except FileNotFoundError:
            datadir.create(path, json.dumps({"uuid": str(uuid.uuid4())}).encode())
        except (OSError, ValueError, KeyError, TypeError):   # unreadable: start anew
            break
    ident = str(uuid.uuid4())
    datadir.write(path, json.dumps({"uuid": ident}).encode())
    return ident


class Board:
    """Where a pool's tokens are shared: nowhere, with one daemon. Replicas share the
    tokens' health and their jobs in flight (``replicas/tokens.py``)."""

    #: How often a caller waiting for a busy token looks again (None: when woken).
    poll: float | None = None

    async def open(self, pool: TokenPool) -> None:
        """Learn what others know of the pool's tokens (here: nothing to learn)."""

    async def close(self) -> None: ...

    async def take(self, token: Token) -> bool:
        """Claim one of the token's ``max_jobs`` places (here: the pool counts them)."""
        return True

    async def give(self, token: Token) -> None:
        """Give a place back."""

    async def tell(self, token: Token) -> None:
        """The token's health changed."""

    async def may_probe(self, token: Token) -> bool:
        """Whether this daemon is the one to probe the token now."""
        return True

    async def met(self, token: Token) -> None:
        """A token joined the pool while it runs: learn what others know of it."""

    async def spend(self, token: Token, images: int, day: str) -> int | None:
        """Count ``images`` created on ``token`` on the UTC ``day``; the day's total among
        all daemons (here: None, the pool's own count is the total)."""
        return None


class TokenPool:
    """Hands out tokens to jobs, keeps each token's health and re-probes the unhealthy."""

    def __init__(self, tokens: list[str], max_jobs: int, *, anonymous: bool = False,
                 backoff: float = 30.0, max_backoff: float = 1800.0,
                 board: Board | None = None, clock: Clock = SYSTEM,
                 key: bytes | None = None, daily_limit: int | None = None,
                 min_interval: float | None = None) -> None:
        """``key``: what the tokens' fingerprints are made with (``fingerprint_key``, or
        the replicas' shared one); without one they hold for this process only."""
        if not tokens:
            raise ValueError("a token pool needs at least one token")
        key = key or secrets.token_bytes(FINGERPRINT_KEY_BYTES)
        self.tokens = [Token(label="anonymous" if anonymous else f"token-{i + 1}",
                             secret=s, fingerprint=fingerprint(key, s), anonymous=anonymous,
                             daily_limit=daily_limit, min_interval=min_interval)
                       for i, s in enumerate(tokens)]
        self.key = key
        self.max_jobs = max_jobs
        self.backoff, self.max_backoff = backoff, max_backoff
        self.daily_limit, self.min_interval = daily_limit, min_interval
        self.board = board or Board()
        self.clock = clock
        self._changed = asyncio.Condition()
        self._check: Callable[[str], Awaitable[None]] | None = None
        self._watcher: asyncio.Task | None = None
        self._pending: set[asyncio.Task] = set()
        #: Told of each token that joins the pool (its client learns its name, cookies).
        self.on_join: list[Callable[[Token], None]] = []
        #: Told of what the operator must hear: (event, token or None, message).
        self.on_event: list[Callable[[str, Token | None, str], None]] = []

    # --- the tokens, as the vault has them ----------------------------------------------

    def sync(self, entries: list[Entry]) -> None:
        """Bring the runtime tokens in line with the vault's ``entries``: new ones join,
        a rotated one joins under its label while the old one retires, removed ones
        retire. Configuration tokens are left as they are."""
        wanted = {e.label: e for e in entries}
        kept: list[Token] = []
        for token in self.tokens:
            entry = wanted.get(token.label)
            if token.source == "runtime" and not token.retired and (
                    entry is None or entry.secret != token.secret):
                token.retired = True
                log.info("token %s retired: %s", token.label,
                         "rotated" if entry else "removed")
            elif entry is not None and token.source == "runtime" and not token.retired:
                token.cookies, token.user_agent = entry.cookies, entry.user_agent
                token.daily_limit = _pick(entry.daily_limit, self.daily_limit)
                token.min_interval = _pick(entry.min_interval, self.min_interval)
                wanted.pop(token.label)
            if not (token.retired and token.in_flight == 0):
                kept.append(token)
        for entry in wanted.values():
            if any(t.secret == entry.secret and not t.retired for t in kept):
                continue                    # a configuration token pasted again
            token = Token(label=entry.label, secret=entry.secret,
                          fingerprint=fingerprint(self.key, entry.secret), source="runtime",
                          mark=entry.fingerprint, cookies=entry.cookies,
                          user_agent=entry.user_agent,
                          daily_limit=_pick(entry.daily_limit, self.daily_limit),
                          min_interval=_pick(entry.min_interval, self.min_interval))
            kept.append(token)
            for call in self.on_join:
                call(token)
            self._soon(self.board.met(token))
            log.info("token %s added", token.label)
        self.tokens = kept
        self._poke()

    def live(self) -> list[Token]:
        """The tokens new jobs may take: not retired; the anonymous identity only while
        there is no other."""
        tokens = [t for t in self.tokens if not t.retired]
        named = [t for t in tokens if not t.anonymous]
        return named or tokens

    def _poke(self) -> None:
        """Wake the callers waiting for a token (a sync is not a coroutine)."""
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()
        self._soon(notify())

    def _soon(self, step: Awaitable[None]) -> None:
        """Run ``step`` on the loop, soon (without a loop, nobody waits: it is dropped)."""
        async def run() -> None:
            try:
                await step
            except Exception as exc:        # Redis away: the next announcement tells
                log.debug("token pool: %s", exc)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if asyncio.iscoroutine(step):
                step.close()
            return
        task = loop.create_task(run())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def refusal(self) -> ArtingError | None:
        """Why no token could take a new job now (to refuse it before it is queued)."""
        live = self.live()
        usable = [t for t in live if t.state is not TokenState.INVALID]
        if not usable:
            return self._none_usable()
        wall = self.clock.time()
        paced = [t.paced_until(wall) for t in usable]
        if all(p is not None for p in paced):
            back = min(p for p in paced if p is not None)
            return UpstreamRateLimited(
                "Every Arting token has reached its pace (daily_limit or min_interval); the "
                f"first is back at {_when(back)}. Add a token (POST /arting/v1/admin/tokens) "
                "or raise its daily_limit.", retry_after=max(1.0, back - wall))
        return None

    def _none_usable(self) -> UpstreamAuthError:
        return UpstreamAuthError(
            "Arting refused every configured token and every one added at runtime. Copy a "
            "fresh `Authorization` value (or the whole request as cURL) from a logged-in "
            "browser session on arting.ai and add it: "
            "POST /arting/v1/admin/tokens, `arting-daemon tokens add`, or the page's Tokens "
            "panel (no restart needed), or set ARTING_AUTH_TOKEN (auth_tokens) and restart.")

    async def spend(self, token: Token, images: int) -> None:
        """A create went through on ``token``: count it against its pace (with replicas,
        on the board, which answers every replica's count)."""
        wall = self.clock.time()
        day = utc_day(wall)
        if token.day != day:
            token.day, token.spent = day, 0
        token.spent += images
        token.last_create = wall
        total = await self.board.spend(token, images, day)
        if total is not None and token.day == day:
            token.spent = max(token.spent, total)

    def learn_pace(self, fingerprint: str, day: str, spent: int,
                   last_create: float | None) -> None:
        """Another daemon created on this token (its day's total, its last create)."""
        for token in self.tokens:
            if token.fingerprint == fingerprint:
                if token.day != day:
                    token.day, token.spent = day, 0
                token.spent = max(token.spent, spent)
                if last_create is not None:
                    token.last_create = max(token.last_create or 0.0, last_create)

    def snapshot(self) -> list[dict]:
        now, wall = self.clock.monotonic(), self.clock.time()
        return [t.public(now, wall) for t in self.tokens]

    def collect(self) -> Iterator:
        """Prometheus gauges of the tokens' health, read at scrape time (by label, never
        the secret)."""
        current = [t for t in self.tokens if not t.retired]   # a rotated label: once
        counts = Counter(t.state.value for t in current)
        tokens = GaugeMetricFamily("arting_tokens", "Tokens, by health state.",
                                   labels=["state"])
        for state in TokenState:
            tokens.add_metric([state.value], counts[state.value])
        yield tokens
        token_state = GaugeMetricFamily("arting_token_state",
                                        "1 for the state each token is in.",
                                        labels=["token", "state"])
        in_flight = GaugeMetricFamily("arting_token_in_flight",
                                      "Jobs each token has in flight upstream.",
                                      labels=["token"])
        balance = GaugeMetricFamily("arting_token_balance",
                                    "Each token's remain_balance at its last poll (tokens "
                                    "Arting has reported one for).", labels=["token"])
        probes = CounterMetricFamily("arting_token_probes",
                                     "Probes of unhealthy tokens, by result.",
                                     labels=["token", "result"])
        for t in current:
            for state in TokenState:
                token_state.add_metric([t.label, state.value], float(t.state is state))
            in_flight.add_metric([t.label], t.in_flight)
            if t.balance is not None:
                balance.add_metric([t.label], t.balance)
            for result in ("ok", "failed", "inconclusive"):
                probes.add_metric([t.label, result], t.probes[result])
        yield token_state
        yield in_flight
        yield balance
        yield probes

    async def acquire(self, timeout: float, prefer: str | None = None,
                      patience: float | None = None) -> Token:
        """The least-busy eligible token (the one ``prefer`` fingerprints first, if
        eligible).

        While some usable token is healthy but busy (at ``max_jobs``), waits for it, up to
        ``timeout``. While every usable token is cooling or blocked, waits only if one
        recovers within ``patience`` seconds (default: ``timeout``); otherwise fails at
        once with that token's own error: a 429 with Retry-After, or Cloudflare's advice.
        """
        deadline = self.clock.monotonic() + timeout
        patience = timeout if patience is None else patience
        async with self._changed:
            while True:
                now, wall = self.clock.monotonic(), self.clock.time()
                live = self.live()
                ready = sorted((t for t in live if t.eligible(now, self.max_jobs)
                                and t.paced_until(wall) is None),
                               key=lambda t: (t.fingerprint != prefer, t.balance == 0,
                                              t.in_flight, t.state is not TokenState.OK))
                for token in ready:
                    if await self.board.take(token):
                        token.in_flight += 1
                        return token
                usable = [t for t in live if t.state is not TokenState.INVALID]
                if not usable:
                    raise self._none_usable()
                unpaced = [t for t in usable if t.paced_until(wall) is None]
                if not unpaced:
                    refusal = self.refusal()
                    assert refusal is not None
                    raise refusal
                if any(t.state is TokenState.OK or t.until <= now for t in unpaced):
                    wake = deadline                     # only busy: a release wakes us
                    if self.board.poll is not None:     # (or, elsewhere, a look again)
                        wake = min(wake, now + self.board.poll)
                else:
                    soonest = min(unpaced, key=lambda t: t.until)
                    wake = soonest.until
                    if wake - now > min(patience, deadline - now):
                        raise _unavailable(soonest, wake - now)
                try:
                    await self.clock.wait_for(self._changed.wait(), max(0.01, wake - now))
                except asyncio.TimeoutError:
                    if self.clock.monotonic() >= deadline:
                        raise UpstreamRateLimited(
                            "No Arting token became free in time; try again later.",
                            retry_after=1.0) from None

    async def release(self, token: Token) -> None:
        async with self._changed:
            token.in_flight = max(0, token.in_flight - 1)
            await self.board.give(token)
            if token.retired and token.in_flight == 0 and token in self.tokens:
                self.tokens.remove(token)       # its last job is done
            self._changed.notify_all()

    async def report(self, token: Token, error: ArtingError | None) -> None:
        """Update the token's health from the outcome of one upstream exchange."""
        async with self._changed:
            if error is None:
                token.state, token.until, token.strikes = TokenState.OK, 0.0, 0
                token.reason = None
                token.jobs_ok += 1
            elif error.token_fault:
                token.errors += 1
                self._mark(token, error)
            await self.board.tell(token)
            self._changed.notify_all()

    def note_balance(self, token: Token, balance: int, low: int | None = None) -> None:
        """Keep the ``remain_balance`` a poll answered with for ``token``; tell the
        operator when it falls below ``low``."""
        before = token.balance
        token.balance, token.balance_at = balance, self.clock.time()
        if low is not None and balance < low and (before is None or before >= low):
            self._tell("low_balance", token, f"The balance of token {token.label} is "
                       f"{balance}, below low_balance ({low}): top it up or add a token.")

    def _tell(self, event: str, token: Token | None, message: str) -> None:
        for call in self.on_event:
            call(event, token, message)
        if event == "token_refused" and token is not None and not any(
                t.state is not TokenState.INVALID for t in self.live() if t is not token):
            for call in self.on_event:
                call("pool_exhausted", None, "No Arting token is usable: every one was "
                     "refused. Add a fresh one (POST /arting/v1/admin/tokens).")

    @staticmethod
    def explain(token: Token, error: ArtingError) -> ArtingError:
        """A refusal met by a token whose balance had reached zero: say that this is the
        likely reason (Arting's own message rarely does)."""
        if token.balance == 0 and isinstance(error, (UpstreamRejected, UpstreamRateLimited,
                                                     UpstreamAuthError)):
            error.message += (f" The balance of {token.label} was 0 at its last poll "
                              "(remain_balance): Arting may refuse it until it is topped up; "
                              "add another token to ARTING_AUTH_TOKEN, or wait.")
            error.args = (error.message,)
        return error

    def _mark(self, token: Token, error: ArtingError) -> None:
        """Put the token out of use after ``error``, until its next probe."""
        token.strikes += 1
        token.reason = error
        if isinstance(error, UpstreamAuthError):
            if token.state is not TokenState.INVALID:
                self._tell("token_refused", token, f"Arting refused the token {token.label} "
                           f"({error.message}); replace it (PATCH /arting/v1/admin/tokens/"
                           f"{token.label}) or remove it.")
            token.state = TokenState.INVALID
        elif isinstance(error, UpstreamRateLimited):
            token.state = TokenState.COOLING
        else:
            token.state = TokenState.BLOCKED
        wait = error.retry_after if isinstance(error, UpstreamRateLimited) else None
        token.until = self.clock.monotonic() + (wait or self._backoff(token))

    def learn(self, fingerprint: str, state: TokenState, until: float, strikes: int,
              reason: ArtingError | None) -> None:
        """Another daemon met this token (``until``: wall-clock time)."""
        for token in self.tokens:
            if token.fingerprint == fingerprint:
                token.state, token.strikes, token.reason = state, strikes, reason
                token.until = (self.clock.monotonic() + max(0.0, until - self.clock.time())
                               if until else 0.0)

    def _backoff(self, token: Token) -> float:
        return backoff(token.strikes, first=self.backoff, cap=self.max_backoff, jitter="none")

    # --- probing ------------------------------------------------------------------------

    def start_probing(self, check: Callable[[str], Awaitable[None]]) -> None:
        """Re-probe unhealthy tokens in the background. ``check(secret)`` returns when
        Arting accepts the token and raises the ``ArtingError`` it met otherwise."""
        self._check = check
        self._watcher = asyncio.create_task(self._watch(), name="token-prober")

    async def close(self) -> None:
        await stop(self._watcher, *self._pending)
        self._watcher = None

    async def probe(self, token: Token) -> str:
        """Probe one token now; returns ``ok``, ``failed`` or ``inconclusive``."""
        assert self._check is not None, "start_probing() first"
        token.probing = True
        error: ArtingError | None = None
        try:
            await self._check(token.secret)
        except ArtingError as exc:
            error = exc
        finally:
            token.probing = False
        async with self._changed:
            token.last_probe = self.clock.time()
            if error is None:
                result = "ok"
                token.state, token.until, token.reason = TokenState.OK, 0.0, None
            elif error.token_fault:     # else Arting was down, or answered garbage
                result = "failed"
                self._mark(token, error)
            else:
                result = "inconclusive"
                token.until = self.clock.monotonic() + self._backoff(token)
            token.probes[result] += 1
            await self.board.tell(token)
            self._changed.notify_all()
        log.info("token %s probed: %s%s", token.label, result,
                 f" ({type(error).__name__})" if error else "")
        return result

    async def probe_unhealthy(self) -> dict[str, str]:
        """Probe every token that is not ok, now (the operator asked)."""
        sick = [t for t in self.tokens
                if t.state is not TokenState.OK and not t.probing and not t.retired]
        results = await asyncio.gather(*(self.probe(t) for t in sick))
        return {t.label: r for t, r in zip(sick, results)}

    async def _watch(self) -> None:
        logs.request_id.set("token-probe")
        while True:
            async with self._changed:
                now = self.clock.monotonic()
                sick = [t for t in self.tokens
                        if t.state is not TokenState.OK and not t.probing and not t.retired]
                due = []
                for token in (t for t in sick if t.until <= now):
                    if await self.board.may_probe(token):
                        due.append(token)
                    else:       # another daemon probes it, and will tell the result
                        token.until = now + self.backoff
                if not due:
                    wake = min((t.until for t in sick), default=None)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await self.clock.wait_for(self._changed.wait(),
                                               None if wake is None else max(0.01, wake - now))
                    continue
            for token, outcome in zip(due, await asyncio.gather(
                    *(self.probe(t) for t in due), return_exceptions=True)):
                if isinstance(outcome, Exception):  # a bug: keep probing the others
                    log.error("probing token %s crashed", token.label, exc_info=outcome)
                    token.until = self.clock.monotonic() + self._backoff(token)
