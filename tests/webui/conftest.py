"""Fixtures for the SD-WebUI extension: an emulated host (A1111 or Forge profile) whose
modules live in ``sys.modules`` only for the test, and the extension loaded into it
the way SD-WebUI loads it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from webui_harness import EXTENSION, Loaded, installed, load
from webui_stubs import PROFILES, Host


@pytest.fixture(params=PROFILES, ids=lambda profile: profile.name)
def host(request, tmp_path: Path, monkeypatch) -> Iterator[Host]:
    for name in ("ARTING_DAEMON_URL", "ARTING_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with installed(Host(request.param, tmp_path)) as emulated:
        yield emulated


@pytest.fixture
def arting(host: Host, monkeypatch) -> Loaded:
    return load(host, EXTENSION, monkeypatch)
