"""The provider interface: what the job runner asks of whoever makes the images.

The runner owns a job's life (queue, stages and their deadlines, cancellation, the
journal, the store); a provider owns one upstream's protocol. For each job the runner
opens an ``attempt`` (where the provider holds what the job needs upstream, such as an
Arting token), ``submit``\\s it unless the provider says it was submitted already,
``follow``\\s it to the end, and ``fetch``\\es each finished image.

A provider sees a job only as ``Work``: its id, its request (a ``Generation``, or an
``Upscale`` of stored images where the provider offers the ``upscale`` feature), when
it was sent upstream, and ``provider_state``, a dict the provider keeps what it must
remember in (a request id, a token's label). The runner journals that dict with the job and hands
it back after a restart, so the provider can pick the job up without sending it twice.

A provider may stand for several (the router, ``router.py``): ``admit`` names the one a
new job is recorded under, and ``for_job`` the one that answers for a job, whose
``label``, ``free_to_repeat`` and ``fetch`` the runner then uses.

This module is the public contract of provider plugins (``docs/plugins/
writing-a-provider.md``), versioned by ``CONTRACT_VERSION``: a kind declares the version
it was written against, and the daemon loads it when ``compatible`` (``contract.py``: the
same major; a minor no newer than its own).
A change that breaks a plugin raises the major; one that adds to it, the minor.

What a provider must do:

* ``submit`` sends the job once, and keeps in ``provider_state`` (JSON: str, numbers,
  lists, dicts) what it needs to find it again; ``submitted`` says so from that dict
  alone, so after a restart the job is followed, never sent twice.
* ``follow`` waits for the end, reporting progress (0..1, never going back), and returns
  where the images are; ``fetch`` reads each one.
* ``cancel`` asks the upstream to stop (best effort); a cancelled ``follow`` lets go.
* Every failure is an ``ArtingError`` of the taxonomy (``errors.py``) whose message names
  the provider and what to do; no secret (key, token, password) in an error, a log line,
  ``health`` or ``provider_state``; every answer read is bounded in size and time.
* ``require`` (and the kind's ``Features``) say what it does beyond text-to-image.

What the daemon guarantees it:

* One attempt at a job at a time, each under the deadline of its stage (``submit_timeout``,
  ``run_timeout`` …), cancelled (``asyncio.CancelledError``) when the job is cancelled or
  out of time; a job is resumed after a restart from its journaled ``provider_state``.
* Its ``[[providers]]`` entry validated before it is made (the kind's own settings model
  included), and its secrets registered for redaction in the daemon's logs.
* ``Services``: the shared outbound HTTP sessions through the configured proxies and the
  outbound policy (``remote.RemoteAPI`` builds a bounded, typed request funnel on them), the
  image store, the metrics, the clock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..upscaling import JobRequest, Upscale
# the contract's version and the features a kind declares, public here too
from .contract import CONTRACT_VERSION as CONTRACT_VERSION, Features as Features, \
    compatible as compatible

#: Called by ``follow`` with the fraction done (0..1) when the upstream says.
OnProgress = Callable[[float], None]
#: The key of ``provider_state`` where a provider keeps the job's place in the upstream's
#: own queue while it waits there (Midjourney's proxy: code 22); the job API shows it.
UPSTREAM_QUEUE = "upstream_queue"


class Work(Protocol):
    """What a provider sees of a job."""

    @property
    def id(self) -> str: ...

    @property
    def generation(self) -> JobRequest: ...

    #: When the upstream got the job (``Attempt.submit``'s answer), once it has it.
    submitted_at: float | None
    #: The name of the provider working on it.
    provider: str

    @property
    def provider_state(self) -> dict[str, Any]:
        """What the provider keeps about the job (changed in place, never replaced)."""


@dataclass
class LoneWork:
    """A job outside the runner, as a provider sees it (``Work``): the check's one
    generation, the conformance kit's jobs."""

    id: str
    generation: JobRequest
    provider: str
    submitted_at: float | None = None
    provider_state: dict[str, Any] = field(default_factory=dict)


class Attempt(ABC):
    """One try at one job upstream, holding what that needs (released on exit)."""

    async def __aenter__(self) -> Attempt:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    @abstractmethod
    async def submit(self) -> float:
        """Send the job upstream; returns the wall time it was sent (when the upstream
        started on it). Sends it again only when that cannot make a second job."""

    @abstractmethod
    async def follow(self, progress: OnProgress) -> list[str]:
        """Wait until the upstream has finished the job; returns where its images are
        (for ``Provider.fetch``). Raises the job's error as soon as the upstream says it
        failed."""


class Provider(ABC):
    #: Names the provider in job records, logs and metrics; ``label`` in messages.
    name: str
    label: str
    #: A job may be sent again at no cost (e.g. a local WebUI): one caught in flight by a
    #: crash is run again instead of failed.
    free_to_repeat: bool = False

    @abstractmethod
    def require(self, feature: str) -> None:
        """Raise ``FeatureDisabled`` unless this provider does ``feature`` (``img2img``,
        ``upscale``): a request's ``features`` say which it needs."""

    def admit(self, gen: JobRequest) -> str:
        """Check that ``gen`` can be made here (raising why not); returns the name of the
        provider its job is recorded under."""
        for feature in gen.features:
            self.require(feature)
        return self.name

    def for_job(self, work: Work) -> Provider:
        """The provider answering for ``work``: this one, unless it stands for several."""
        return self

    def lineup(self) -> list[Provider]:
        """The providers this one stands for, in routing order: itself, unless several."""
        return [self]

    def upscales(self, upscale: Upscale) -> bool:
        """Whether it can upscale these pictures, where it has the ``upscale`` feature:
        any, unless it upscales only its own (Midjourney's ``U`` buttons)."""
        return True

    @abstractmethod
    def submitted(self, work: Work) -> bool:
        """Whether the upstream accepted this job already, so it is followed, not resent."""

    def foreign(self, work: Work) -> str | None:
        """Why a submitted job taken over from another replica cannot be followed from
        here (it was sent to another upstream than this one talks to), or None."""
        return None

    @abstractmethod
    def attempt(self, work: Work, deadline: float) -> AbstractAsyncContextManager[Attempt]:
        """An attempt at ``work``; what it holds is waited for until ``deadline`` (wall
        time) at the latest."""

    @abstractmethod
    async def fetch(self, work: Work, output: str) -> bytes:
        """The bytes of one finished image of ``work`` that ``follow`` pointed at."""

    def seeds(self, work: Work, outputs: list[str]) -> list[int] | None:
        """The seed of each finished image, where the upstream's differ from the request's
        ``seed, seed+1, …`` (Midjourney's four from one seed); None: the request's."""
        return None

    async def cancel(self, work: Work) -> None:  # noqa: B027 (a default, not abstract)
        """Ask the upstream to stop a submitted job (best effort); by default there is no
        way to, and the upstream finishes it unseen."""

    async def catalogue(self) -> dict[str, str] | None:
        """The models the upstream offers (its ids → names to show), read at start and
        every few minutes for an entry with ``models = "*"``; None: it has no catalogue
        to read (its kind's ``models`` are fixed, or it offers what its entry lists)."""
        return None

    def health(self) -> dict[str, Any]:
        """What the operator sees of this provider in ``/arting/v1/status``."""
        return {}

    async def probe(self) -> dict[str, Any]:
        """For ``arting-daemon check``: ask the upstream something that spends nothing and
        proves the credentials (raising the error met); returns what it learned
        (``models``: how many it offers, ``balance``: its credits)."""
        return {}

    def unready(self) -> str | None:
        """Why no job can go through now (for ``/readyz``), or None."""
        return None
