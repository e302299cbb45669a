"""This repository as a host app gets it when a user installs it from its URL: a
``git clone`` (ComfyUI-Manager's "Install via Git URL", SD-WebUI's "Install from URL").

The clone is of this checkout, with the working tree's changes laid over it (tracked
files changed or deleted, new files not ignored), so a test sees the code under test.
``symlinks=False`` clones as git does where links are not allowed (Windows by default):
each link becomes a small file holding its target."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True, timeout=120).stdout


def clone(dest: Path, *, symlinks: bool = True) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout of the repository")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _git("clone", "--quiet", "-c", f"core.symlinks={str(symlinks).lower()}", str(ROOT),
         str(dest), cwd=dest.parent)
    changed = _git("ls-files", "-z", "--modified", "--others", "--exclude-standard")
    deleted = set(_git("ls-files", "-z", "--deleted").split("\0"))
    for name in filter(None, changed.split("\0")):
        source, target = ROOT / name, dest / name
        if target.is_symlink() or target.exists():
            target.unlink()
        if name in deleted:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink() and symlinks:
            target.symlink_to(os.readlink(source))
        elif source.is_symlink():
            target.write_text(os.readlink(source))
        else:
            shutil.copy2(source, target)
    return dest
