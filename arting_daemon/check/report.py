"""What a check found: one ``Finding`` per thing measured, and the settings it calls for.

A finding is ``ok``, ``info``, ``warn`` or ``fail``; the check passes (exit 0) when none
fails, i.e. when everything the daemon needs works. Where a measured value differs
from what the settings assume, the finding carries the exact ``arting.toml`` line that
makes them agree; ``Proposal`` keeps those changes together, so two findings about one
key end up as one line.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..config import Settings, env_names

LEVELS = ("ok", "info", "warn", "fail")


def toml_value(value: Any) -> str:
    """A value as TOML writes it (strings in JSON's escaping, which TOML reads too)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def toml_line(key: str, value: Any) -> str:
    return f"{key} = {toml_value(value)}"


@dataclass
class Finding:
    topic: str          # what was looked at: "reach", "cloudflare", "token-1", "image host" ...
    level: str          # ok, info, warn, fail
    message: str
    lines: list[str] = field(default_factory=list)   # arting.toml lines it calls for
    data: dict = field(default_factory=dict)          # what was measured

    def text(self) -> str:
        out = f"{self.level:<4}  {self.topic}: {self.message}"
        if self.lines:
            out += " → arting.toml: " + "  ".join(self.lines)
        return out


class Proposal:
    """The settings the findings call for, starting from the ones in use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.values: dict[str, Any] = {}

    def current(self, key: str) -> Any:
        if key in self.values:
            return self.values[key]
        value = getattr(self.settings, key)
        return list(value) if isinstance(value, list) else value

    def set(self, key: str, value: Any) -> str:
        """Propose ``key = value``; returns the line."""
        self.values[key] = value
        return toml_line(key, value)

    def add(self, key: str, item: str) -> str:
        items = self.current(key)
        if item.lower() not in (i.lower() for i in items):
            items = [*items, item]
        return self.set(key, items)

    def remove(self, key: str, item: str) -> str:
        return self.set(key, [i for i in self.current(key) if i.lower() != item.lower()])

    def lines(self) -> list[str]:
        return [toml_line(k, v) for k, v in self.values.items()]

    def overridden(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """Proposed keys the environment sets, which wins over arting.toml."""
        env: Mapping[str, str] = os.environ if environ is None else environ
        out = {}
        for key in self.values:
            names = [e for e in env_names(key) if env.get(e, "") != ""] \
                if key in Settings.model_fields else []
            if names:
                out[key] = names[0]
        return out


class Report:
    """The findings of one run, in the order they were made."""

    def __init__(self, settings: Settings, target: dict,
                 on_finding: Callable[[Finding], None] | None = None) -> None:
        self.target = target
        self.findings: list[Finding] = []
        self.proposal = Proposal(settings)
        self.started = time.time()
        self.duration = 0.0
        self.on_finding = on_finding

    def add(self, topic: str, level: str, message: str, lines: list[str] | None = None,
            /, **data: Any) -> Finding:
        assert level in LEVELS, level
        finding = Finding(topic, level, message, list(lines or []), data)
        self.findings.append(finding)
        if self.on_finding is not None:
            self.on_finding(finding)
        return finding

    @property
    def ok(self) -> bool:
        return not any(f.level == "fail" for f in self.findings)

    def count(self, level: str) -> int:
        return sum(f.level == level for f in self.findings)

    def summary(self) -> str:
        problems, warnings = self.count("fail"), self.count("warn")
        if self.ok and not warnings:
            return "Everything the daemon needs works."
        parts = [f"{n} {word}{'' if n == 1 else 's'}" for n, word in
                 ((problems, "problem"), (warnings, "warning")) if n]
        verdict = "The daemon would not work as configured" if problems else \
            "The daemon works; see the warnings"
        return f"{verdict} ({', '.join(parts)})."

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "summary": self.summary(),
            "target": self.target,
            "started_at": self.started,
            "duration": round(self.duration, 3),
            "findings": [asdict(f) for f in self.findings],
            "config_lines": self.proposal.lines(),
            "overridden_by_environment": self.proposal.overridden(),
        }
