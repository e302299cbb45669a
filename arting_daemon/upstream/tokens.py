"""The pool of Arting identities (tokens) and their health, learned from live traffic.

A token is *ok*, *cooling* (rate-limited until a time), *blocked* (Cloudflare stood in
the way) or *invalid* (Arting refused it). Only auth errors make a token invalid.
Jobs take the least-busy eligible token and hold it while Arting works on their job,
so each token has a bound on jobs in flight.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from ..errors import (ArtingError, CloudflareBlocked, UpstreamAuthError,
                      UpstreamRateLimited)


class TokenState(str, Enum):
    OK = "ok"
    COOLING = "cooling"
    BLOCKED = "blocked"
    INVALID = "invalid"


@dataclass(eq=False)
class Token:
    label: str
    secret: str = field(repr=False)
    anonymous: bool = False
    state: TokenState = TokenState.OK
    until: float = 0.0          # monotonic time a cooling/blocked token may be tried again
    in_flight: int = 0
    jobs_ok: int = 0
    errors: int = 0
    strikes: int = 0            # consecutive cooling/blocked reports, for the backoff
    last_error: str | None = None

    def eligible(self, now: float, max_jobs: int) -> bool:
        if self.state is TokenState.INVALID or self.in_flight >= max_jobs:
            return False
        return self.state is TokenState.OK or now >= self.until

    def public(self, now: float) -> dict:
        """What the operator may see: never the secret."""
        return {"label": self.label, "anonymous": self.anonymous, "state": self.state.value,
                "retry_in": round(max(0.0, self.until - now), 1) if self.until > now else 0,
                "in_flight": self.in_flight, "jobs_ok": self.jobs_ok, "errors": self.errors,
                "last_error": self.last_error}


def anonymous_identity(data_dir: Path) -> str:
    """A UUID created once and kept, so we look like one returning guest, not many."""
    path = data_dir / "identity.json"
    try:
        return str(uuid.UUID(json.loads(path.read_text())["uuid"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    ident = str(uuid.uuid4())
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"uuid": ident}))
    tmp.replace(path)
    return ident


class TokenPool:
    """Hands out tokens to jobs and keeps each token's health."""

    COOL_DEFAULT = 30.0
    COOL_MAX = 600.0

    def __init__(self, secrets: list[str], max_jobs: int, *, anonymous: bool = False) -> None:
        if not secrets:
            raise ValueError("a token pool needs at least one token")
        self.tokens = [Token(label="anonymous" if anonymous else f"token-{i + 1}",
                             secret=s, anonymous=anonymous) for i, s in enumerate(secrets)]
        self.max_jobs = max_jobs
        self._changed = asyncio.Condition()

    def snapshot(self) -> list[dict]:
        now = time.monotonic()
        return [t.public(now) for t in self.tokens]

    async def acquire(self, timeout: float, prefer: str | None = None) -> Token:
        """The least-busy eligible token (``prefer``'s label first, if eligible); waits
        for one while any could become eligible."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                now = time.monotonic()
                ready = [t for t in self.tokens if t.eligible(now, self.max_jobs)]
                if ready:
                    token = min(ready, key=lambda t: (t.label != prefer, t.in_flight,
                                                      t.state is not TokenState.OK))
                    token.in_flight += 1
                    return token
                if all(t.state is TokenState.INVALID for t in self.tokens):
                    raise UpstreamAuthError(
                        "Arting refused every configured token. Copy a fresh `Authorization` "
                        "value from a logged-in browser session on arting.ai and set "
                        "ARTING_AUTH_TOKEN (or auth_tokens in arting.toml).")
                wake = min((t.until for t in self.tokens if t.state is not TokenState.INVALID
                            and t.until > now), default=now + 1.0)
                if wake >= deadline and not any(t.in_flight for t in self.tokens):
                    raise UpstreamRateLimited(
                        "Arting is rate-limiting every token; try again later.",
                        retry_after=max(1.0, wake - now))
                try:
                    await asyncio.wait_for(self._changed.wait(),
                                           max(0.05, min(wake, deadline) - now))
                except asyncio.TimeoutError:
                    if time.monotonic() >= deadline:
                        raise UpstreamRateLimited(
                            "No Arting token became free in time; try again later.",
                            retry_after=max(1.0, wake - time.monotonic())) from None

    async def release(self, token: Token) -> None:
        async with self._changed:
            token.in_flight = max(0, token.in_flight - 1)
            self._changed.notify_all()

    async def report(self, token: Token, error: ArtingError | None) -> None:
        """Update the token's health from the outcome of one upstream exchange."""
        async with self._changed:
            now = time.monotonic()
            if error is None:
                token.state, token.until, token.strikes = TokenState.OK, 0.0, 0
                token.jobs_ok += 1
            elif isinstance(error, UpstreamAuthError):
                token.state, token.errors = TokenState.INVALID, token.errors + 1
                token.last_error = error.message
            elif isinstance(error, (UpstreamRateLimited, CloudflareBlocked)):
                token.strikes += 1
                token.errors += 1
                backoff = error.retry_after or min(self.COOL_MAX,
                                                   self.COOL_DEFAULT * 2 ** (token.strikes - 1))
                token.state = (TokenState.COOLING if isinstance(error, UpstreamRateLimited)
                               else TokenState.BLOCKED)
                token.until = now + backoff
                token.last_error = error.message
            self._changed.notify_all()
