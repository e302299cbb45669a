"""Backoff between retries: exponential with full jitter, from the daemon's own generator."""

from __future__ import annotations

import random

BASE, CAP = 0.5, 8.0
#: Our own generator: jitter must not disturb (or depend on) the global ``random``.
_jitter = random.Random()


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, ...)."""
    return _jitter.uniform(0, min(CAP, BASE * 2 ** (attempt - 1))) + 0.05
