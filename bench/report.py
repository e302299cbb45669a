"""Figures, their baselines and targets, and how they are printed."""

from __future__ import annotations

import math
import os
import platform
import sys
from dataclasses import asdict, dataclass, field

from arting_daemon.timing import quantile


@dataclass
class Figure:
    """One measured value beside the baseline it is compared with."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""           # e.g. "≤ 1 ms"; empty: reported, not judged
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0) or self.value is None:
            return None
        return self.value / self.baseline

    @property
    def added(self) -> float | None:
        return None if self.baseline is None else self.value - self.baseline


@dataclass
class Section:
    title: str
    setup: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *figures: Figure) -> None:
        self.figures.extend(figures)

    def to_json(self) -> dict:
        return {"title": self.title, "setup": self.setup, "notes": self.notes,
                "figures": [{**asdict(f), "ratio": f.ratio, "added": f.added}
                            for f in self.figures]}


def pct(data: list[float], q: float) -> float:
    """Percentile ``q`` (0..100) of unsorted data, by linear interpolation."""
    return quantile(sorted(data), q / 100) if data else math.nan


def num(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    magnitude = abs(value)
    text = (f"{value:.0f}" if magnitude >= 100 else f"{value:.1f}" if magnitude >= 10
            else f"{value:.2f}" if magnitude >= 0.1 else f"{value:.3f}")
    return f"{text} {unit}".rstrip()


def render(section: Section) -> str:
    rows = [("figure", "value", "baseline", "value − baseline", "ratio", "target", "met")]
    for f in section.figures:
        ratio = f.ratio
        rows.append((f.name, num(f.value, f.unit),
                     f"{num(f.baseline, f.unit)} ({f.baseline_name})" if f.baseline is not None
                     else "-",
                     num(f.added, f.unit) if f.added is not None else "-",
                     f"{ratio:.2f}×" if ratio is not None else "-",
                     f.target or "-",
                     {True: "yes", False: "NO", None: "-"}[f.met]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"== {section.title} ==", section.setup, ""]
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.extend(f"* {note}" for note in section.notes)
    return "\n".join(lines) + "\n"


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "-"
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": sys.version.split()[0],
            "platform": platform.platform(), "loadavg": load}
