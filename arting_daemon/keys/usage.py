"""What a key used: requests, jobs by outcome and images, by UTC day and model, and what
is left of its limits.

Jobs and images come from the job journal, where each job's outcome is recorded once;
requests from the key file's counters. Cache hits and other free answers are whatever
the journal says the job was: a job that made no new images counts no images.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..engine.jobs import Job
from ..engine.journal import JobJournal
from .counters import WINDOW, Standing, utc_day
from .gate import Gate
from .limits import LIMITS
from .ring import KeyStore
from .store import ApiKey

OUTCOMES = ("succeeded", "failed", "cancelled")


def _day() -> dict[str, Any]:
    return {"requests": 0, "jobs": dict.fromkeys(OUTCOMES, 0), "images": 0, "models": {}}


async def report(owners: list[str], days: int, ring: KeyStore, journal: JobJournal[Job],
                 gate: Gate) -> list[dict[str, Any]]:
    """One entry per owner (a key id, ``admin`` or ``local``), the last ``days`` UTC days."""
    now = gate.clock.time()
    since = now - now % 86400 - (days - 1) * 86400
    by_owner: defaultdict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for owner, day, model, state, jobs, images in await journal.outcomes(since):
        entry = by_owner[owner].setdefault(day, _day())
        entry["jobs"][state] += jobs
        per_model = entry["models"].setdefault(model, {"jobs": 0, "images": 0})
        per_model["jobs"] += jobs
        if state == "succeeded":
            entry["images"] += images or 0
            per_model["images"] += images or 0
    for (key_id, day), count in (await ring.requests(since)).items():
        by_owner[key_id].setdefault(day, _day())["requests"] += count
    return [_entry(owner, by_owner.get(owner, {}), ring.get(owner),
                   await gate.standing(owner), now) for owner in owners]


def _entry(owner: str, days: dict[str, dict[str, Any]], key: ApiKey | None,
           standing: Standing,
           now: float) -> dict[str, Any]:
    totals = _day()
    for entry in days.values():
        totals["requests"] += entry["requests"]
        totals["images"] += entry["images"]
        for state in OUTCOMES:
            totals["jobs"][state] += entry["jobs"][state]
    del totals["models"]
    out: dict[str, Any] = {
        "owner": owner, "name": key.name if key else owner,
        "key": key.public() if key else None,
        "totals": totals,
        "days": [{"day": day, **entry} for day, entry in sorted(days.items(), reverse=True)],
        "in_flight": {"jobs": standing.load.get("jobs", 0),
                      "images": standing.load.get("images", 0)},
        "today": {"day": utc_day(now), "images": standing.used.get("images", 0)},
    }
    if key is not None:
        out["remaining"] = {**remaining(key, standing), "window_seconds": WINDOW}
    return out


def remaining(key: ApiKey, standing: Standing) -> dict[str, int | None]:
    """What is left of each of the key's limits that counts (None: no limit set)."""
    left: dict[str, int | None] = {}
    for limit in LIMITS:
        if limit.left is not None:
            cap = getattr(key.limits, limit.field)
            left[limit.left] = None if cap is None else limit.remaining(cap, standing)
    return left
