"""What a key used: requests, jobs by outcome and images, by UTC day and model, and what
is left of its limits.

Jobs and images come from the job journal, where each job's outcome is recorded once;
requests from the key file's counters. Cache hits and other free answers are whatever
the journal says the job was: a job that made no new images counts no images.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from ..engine.journal import Journal
from .limits import WINDOW, Gate, Standing
from .ring import KeyRing, utc_day
from .store import ApiKey

OUTCOMES = ("succeeded", "failed", "cancelled")


def _day() -> dict[str, Any]:
    return {"requests": 0, "jobs": dict.fromkeys(OUTCOMES, 0), "images": 0, "models": {}}


async def report(owners: list[str], days: int, ring: KeyRing, journal: Journal,
                 gate: Gate) -> list[dict[str, Any]]:
    """One entry per owner (a key id, ``admin`` or ``local``), the last ``days`` UTC days."""
    now = time.time()
    since = now - now % 86400 - (days - 1) * 86400
    by_owner: defaultdict[str, dict[str, dict]] = defaultdict(dict)
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


def _entry(owner: str, days: dict[str, dict], key: ApiKey | None, standing: Standing,
           now: float) -> dict[str, Any]:
    totals = _day()
    for entry in days.values():
        totals["requests"] += entry["requests"]
        totals["images"] += entry["images"]
        for state in OUTCOMES:
            totals["jobs"][state] += entry["jobs"][state]
    del totals["models"]
    load, used, recent = standing
    out: dict[str, Any] = {
        "owner": owner, "name": key.name if key else owner,
        "key": key.public() if key else None,
        "totals": totals,
        "days": [{"day": day, **entry} for day, entry in sorted(days.items(), reverse=True)],
        "in_flight": {"jobs": load.jobs, "images": load.images},
        "today": {"day": utc_day(now), "images": used},
    }
    if key is not None:
        limits = key.limits
        out["remaining"] = {
            "images_today": None if limits.images_per_day is None else max(
                0, limits.images_per_day - used - load.images),
            "requests_this_minute": None if limits.requests_per_minute is None else max(
                0, limits.requests_per_minute - recent),
            "jobs_in_flight": None if limits.max_concurrent is None else max(
                0, limits.max_concurrent - load.jobs),
            "window_seconds": WINDOW,
        }
    return out
