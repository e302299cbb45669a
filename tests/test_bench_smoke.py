"""The benchmarks' tiniest variants, so their code cannot rot (their numbers are not
checked: CI must not gate on timings), and their promise to leave no process behind."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the bench reads /proc")


def children_of(pid: int) -> list[int]:
    """Processes started by the bench with ``pid`` (they carry its pid in their env)."""
    mark = f"BENCH_PARENT_PID={pid}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if mark in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def scratch_dir(pid: int) -> Path:
    """The scratch directory of the bench with ``pid`` (other sessions' benches may
    have theirs beside it)."""
    return Path(tempfile.gettempdir()) / f"arting-bench-{pid}"


@linux_only
def test_every_benchmark_runs_and_reports_against_a_baseline(tmp_path):
    out = tmp_path / "figures.json"
    proc = subprocess.Popen([sys.executable, "-m", "bench", "--smoke", "--json", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        printed, _ = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, printed.decode()
    report = json.loads(out.read_text())
    titles = [s["title"] for s in report["sections"]]
    assert titles == ["1. Added latency", "2. Scale", "3. Polling efficiency", "4. Start-up",
                      "5. Image path", "6. Replicas", "7. Seed-style baseline"]
    for section in report["sections"]:
        assert section["title"] in printed.decode()
        figures = section["figures"]
        assert figures and all(math.isfinite(f["value"]) for f in figures), section
        assert any(f["baseline"] is not None and f["ratio"] is not None for f in figures)
        assert any(f["target"] for f in figures), f"{section['title']} judges no target"
    assert {"nproc", "cpu", "python"} <= set(report["machine"])
    assert not children_of(proc.pid)
    assert not scratch_dir(proc.pid).exists()


@linux_only
def test_a_killed_bench_leaves_no_daemon_or_emulator(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "bench", "polling", "--smoke"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(children_of(proc.pid)) < 5:          # three emulators, two daemons
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        started = children_of(proc.pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in started):
        assert time.monotonic() < deadline, "children outlived the bench"
        time.sleep(0.05)
    assert not children_of(proc.pid)
    # the next run clears what the killed one could not
    leftover = scratch_dir(proc.pid)
    assert leftover.exists()
    subprocess.run([sys.executable, "-m", "bench", "startup", "--smoke"], cwd=ROOT,
                   check=True, capture_output=True, timeout=60)
    assert not leftover.exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie waiting for its (dead) parent's reaper counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
