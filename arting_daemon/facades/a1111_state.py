"""What an AUTOMATIC1111 server keeps between requests: its options (the checkpoint they
pick among them) and the requests in flight, for ``progress``, ``interrupt`` and
``skip``.

One daemon keeps the options in ``a1111.json`` in the data directory, so they survive a
restart, and its requests in memory. Replicas share both through Redis
(``replicas/a1111.py``), so a progress call on one replica sees a request another one
is working on, and an interrupt there stops it.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import datadir
from ..engine.jobs import Job


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
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def every(self) -> list[Job]:
        return self.jobs + self.upscales

    def record(self) -> dict[str, Any]:
        """What other replicas see of it: the jobs by id."""
        return {"id": self.id, "kind": self.kind, "owner": self.owner,
                "jobs": [j.id for j in self.jobs], "upscales": [j.id for j in self.upscales],
                "started": self.started, "interrupted": self.interrupted,
                "skipped": self.skipped}


class A1111State:
    """One daemon's: options in a file, requests in memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._batches: list[Batch] = []
        try:
            saved = json.loads(path.read_text())
            self._model, self._options = saved.get("model"), dict(saved.get("options") or {})
        except (OSError, ValueError, AttributeError):
            self._model, self._options = None, {}

    async def open(self) -> None:
        """Nothing to start: the file was read."""

    async def close(self) -> None:
        """Nothing to stop."""

    async def read(self) -> tuple[str | None, dict[str, Any]]:
        """The checkpoint chosen (None: the daemon's default) and the other options."""
        return self._model, dict(self._options)

    async def write(self, model: str | None, options: dict[str, Any]) -> None:
        self._model, self._options = model, dict(options)
        datadir.write(self.path, json.dumps({"model": model, "options": options}).encode())

    async def add(self, batch: Batch) -> None:
        self._batches.append(batch)

    async def update(self, batch: Batch) -> None:
        """The batch has more jobs (others see them)."""

    async def remove(self, batch: Batch) -> None:
        self._batches.remove(batch)

    async def of(self, owner: str) -> list[Batch]:
        """The owner's requests in flight."""
        return [b for b in self._batches if b.owner == owner]

    async def mark(self, batch: Batch, **flags: bool) -> None:
        """Note that a request was interrupted or skipped (``interrupted``, ``skipped``)."""
        for name, value in flags.items():
            setattr(batch, name, value)

    async def refresh(self, batch: Batch) -> None:
        """Bring a request's flags up to date (others may have set them)."""
