"""The daemon process's tuning (``process.py``): which event loop it runs on, and its
garbage collector once started. The daemon on each loop, end to end, is in
``test_cli.py``."""

from __future__ import annotations

import asyncio
import gc
import sys

import pytest

from arting_daemon import process
from arting_daemon.config import ConfigError


def test_auto_and_uvloop_run_on_uvloop_where_it_is_installed():
    pytest.importorskip("uvloop")   # a dependency wherever the daemon runs here
    for choice in ("auto", "uvloop"):
        factory = process.loop_factory(choice)
        assert factory is not None
        loop = factory()
        try:
            assert process.describe(loop) == "uvloop"
        finally:
            loop.close()


def test_asyncio_is_asyncios_own_loop():
    assert process.loop_factory("asyncio") is None
    seen = []

    async def main() -> None:
        seen.append(process.describe(asyncio.get_running_loop()))

    process.run(main(), "asyncio")
    assert seen == ["asyncio"]


def test_without_uvloop_auto_falls_back_and_uvloop_says_what_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)      # import uvloop fails
    assert process.loop_factory("auto") is None
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        process.loop_factory("uvloop")


def test_settle_gc_freezes_what_start_up_made_and_collects_less_often():
    before = gc.get_threshold()
    try:
        process.settle_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (process.GC_THRESHOLD, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
