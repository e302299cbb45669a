"""What an AUTOMATIC1111 server keeps between requests: its options (the checkpoint they
pick among them) and the requests in flight, for ``progress``, ``interrupt`` and
``skip``.

A real A1111 runs one request at a time, and its ``interrupt`` stops that one. Here
several run at once, so ``current`` says which one A1111 would be running for a
caller: the one whose client has just gone away, if there is one (a client that hangs
up sends its interrupt right after, as SillyTavern does when its user presses Stop),
else the oldest in flight. A request whose client went away stays here, marked
``gone``, for ``GONE_KEPT`` seconds, so that interrupt finds it instead of stopping
someone else's request.

Options come in layers: the defaults everyone starts from (set by the admin key, or in
local mode), and over them what each user key has set for itself (``layer``: the key's
id), which no other key sees. One daemon keeps them in ``a1111.json`` in the data
directory, so they survive a restart, and its requests in memory. Replicas share both
through Redis (``replicas/a1111.py``), so a progress call on one replica sees a request
another one is working on, and an interrupt there stops it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .. import datadir
from ..engine.jobs import Job


#: Seconds a request whose client went away stays findable by the interrupt that follows.
GONE_KEPT = 10.0


@dataclass(eq=False)
class Batch:
    """One A1111 request in flight: its generation jobs and then its upscale jobs."""

    kind: str
    owner: str
    jobs: list[Job] = field(default_factory=list)
    upscales: list[Job] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    interrupted: bool = False
    skipped: bool = False
    #: Its client closed the connection (``left``: when) before the answer was ready.
    gone: bool = False
    left: float = 0.0
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: Whether its client has hung up by now (known where the request is answered; its
    #: handler hears of it a moment later).
    hung_up: Callable[[], bool] = field(default=lambda: False, repr=False)

    @property
    def every(self) -> list[Job]:
        return self.jobs + self.upscales

    @property
    def running(self) -> bool:
        return any(not job.state.terminal for job in self.every)

    def record(self) -> dict[str, Any]:
        """What other replicas see of it: the jobs by id."""
        return {"id": self.id, "kind": self.kind, "owner": self.owner,
                "jobs": [j.id for j in self.jobs], "upscales": [j.id for j in self.upscales],
                "started": self.started, "interrupted": self.interrupted,
                "skipped": self.skipped, "left": self.left}


def current(batches: list[Batch], running: bool = False) -> Batch | None:
    """The request A1111 would be running among one caller's (oldest first): the one whose
    client went away most recently, unless an interrupt or skip already took it, else the
    oldest in flight. ``running``: only requests with a job still running count (what
    ``progress`` shows)."""
    gone = [b for b in batches if b.gone and not (b.interrupted or b.skipped)
            and (b.running or not running)]
    if gone:
        return max(gone, key=lambda b: b.left)
    return next((b for b in batches if not b.gone), None)


class A1111Store(Protocol):
    """Where the options and the requests in flight are kept (the backend builds it)."""

    async def read(self, layer: str | None = None) -> tuple[str | None, dict[str, Any]]:
        """What ``layer`` (a user key's id; None: the defaults) has set: the checkpoint
        chosen (None: the one below) and the other options."""

    async def write(self, layer: str | None, model: str | None,
                    options: dict[str, Any]) -> None: ...

    async def add(self, batch: Batch) -> None: ...

    async def update(self, batch: Batch) -> None:
        """The batch has more jobs (others see them)."""

    async def remove(self, batch: Batch) -> None: ...

    async def of(self, owner: str) -> list[Batch]:
        """The owner's requests in flight."""

    async def mark(self, batch: Batch, **flags: bool) -> None:
        """Note that a request was interrupted or skipped (``interrupted``, ``skipped``)."""

    async def refresh(self, batch: Batch) -> None:
        """Bring a request's flags up to date (others may have set them)."""


def _layer(saved: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    return saved.get("model"), dict(saved.get("options") or {})


class A1111State:
    """One daemon's: options in a file, requests in memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._batches: list[Batch] = []
        try:
            saved = json.loads(path.read_text())
            self._layers = {None: _layer(saved), **{
                k: _layer(v) for k, v in dict(saved.get("keys") or {}).items()}}
        except (OSError, ValueError, AttributeError, TypeError):
            self._layers = {}

    async def open(self) -> None:
        """Nothing to start: the file was read."""

    async def close(self) -> None:
        """Nothing to stop."""

    async def read(self, layer: str | None = None) -> tuple[str | None, dict[str, Any]]:
        """What ``layer`` (a user key's id; None: the defaults) has set: the checkpoint
        chosen (None: the one below) and the other options."""
        model, options = self._layers.get(layer, (None, {}))
        return model, dict(options)

    async def write(self, layer: str | None, model: str | None,
                    options: dict[str, Any]) -> None:
        self._layers[layer] = model, dict(options)
        model, options = self._layers.get(None, (None, {}))
        keys = {k: {"model": m, "options": o} for k, (m, o) in self._layers.items()
                if k is not None and (m or o)}
        datadir.write(self.path, json.dumps({"model": model, "options": options,
                                             "keys": keys}).encode())

    async def add(self, batch: Batch) -> None:
        self._batches.append(batch)

    async def update(self, batch: Batch) -> None:
        """The batch has more jobs (others see them)."""

    async def remove(self, batch: Batch) -> None:
        """The request has been answered; one whose client went away (``gone``) stays for
        ``GONE_KEPT`` seconds more."""
        if not batch.gone:
            self._batches.remove(batch)

    async def of(self, owner: str) -> list[Batch]:
        """The owner's requests in flight (and those whose client has just gone away)."""
        now = time.time()
        self._batches = [b for b in self._batches if not b.gone or now - b.left < GONE_KEPT]
        return [b for b in self._batches if b.owner == owner]

    async def mark(self, batch: Batch, **flags: bool) -> None:
        """Note that a request was interrupted or skipped, or its client went away
        (``interrupted``, ``skipped``, ``gone``)."""
        for name, value in flags.items():
            setattr(batch, name, value)
        if flags.get("gone"):
            batch.left = time.time()

    async def refresh(self, batch: Batch) -> None:
        """Bring a request's flags up to date (others may have set them)."""
