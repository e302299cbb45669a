"""The package passes its linter and its type checker, so ``python -m pytest`` fails on their
findings: ruff (mistakes: pyflakes, pycodestyle, bugbear) and mypy (strict where it is
cheap: the engine, the provider interface, user keys), both as ``pyproject.toml`` sets
them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_ruff_finds_nothing():
    done = run("ruff", "check", "--no-cache", "arting_daemon", "plugins")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rest_has_no_undefined_or_unused_names():
    """The tests, tools and plugins under pyflakes' eye too: a name a test uses but never
    imports fails only when that line runs, which may be a fixture's teardown (it once left
    eight tests' daemons running in CI). Pytest fixtures imported into a module and taken as
    arguments look like redefinitions to pyflakes (F811), so that one is left out."""
    done = run("ruff", "check", "--no-cache", "--select", "F", "--ignore", "F811",
               *(p for p in ("tests", "bench", "tools", "plugins", "comfyui_nodes",
                             "sd_webui_extension", "install.py") if (ROOT / p).exists()))
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing():
    done = run("mypy", "--cache-dir", str(ROOT / ".mypy_cache"))
    assert done.returncode == 0, done.stdout + done.stderr
