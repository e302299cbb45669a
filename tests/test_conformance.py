"""The conformance kit (``arting_daemon.testing``): the built-in kinds that follow a job
upstream pass it against their emulators, over real sockets; providers that break the
contract fail it, each with a message naming the rule broken."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from arting_daemon.errors import UpstreamAuthError
from arting_daemon.providers import builtin
from arting_daemon.providers.midjourney import provider as mj
from arting_daemon.sandbox.midjourney import MidjourneyEmulator
from arting_daemon.sandbox.stability import StabilityEmulator
from arting_daemon.testing import ConformanceError, check_provider, conformance

MJ_SECRET = "mj-secret-kit-5150"
SAI_KEY = "sk-stability-kit-8128"
HOLD = 120.0     # seconds a held job would take: longer than the kit waits


class MidjourneyUpstream:
    def __init__(self, emulator: MidjourneyEmulator) -> None:
        self.emulator, self.secret = emulator, MJ_SECRET
        self.entry: dict[str, Any] = {"name": "mj", "kind": "midjourney",
                                      "base_url": f"{emulator.url}/mj", "api_key": MJ_SECRET}

    def submissions(self) -> int:
        return len(self.emulator.requests_for("imagine"))

    def fault(self, kind: str | None) -> None:
        self.emulator.clear_faults()
        self.emulator.configure(generation_time=HOLD if kind == "hold" else 0.2)
        if kind in ("unauthorized", "oversized"):
            self.emulator.add_fault(kind)
        elif kind == "server_error":
            self.emulator.add_fault("http_error", status=500)


class StabilityUpstream:
    def __init__(self, emulator: StabilityEmulator) -> None:
        self.emulator, self.secret = emulator, SAI_KEY
        self.entry: dict[str, Any] = {"name": "sai", "kind": "stability",
                                      "base_url": emulator.url, "api_key": SAI_KEY}

    def submissions(self) -> int:
        return len(self.emulator.requests_for("generate"))

    def fault(self, kind: str | None) -> None:
        self.emulator.clear_faults()
        self.emulator.configure(api_keys=["sk-other"] if kind == "unauthorized" else [SAI_KEY])
        if kind == "hold":
            self.emulator.add_fault("slow", route="generate", delay=HOLD)
        elif kind == "oversized":
            self.emulator.add_fault("oversized")
        elif kind == "server_error":
            self.emulator.add_fault("http_error", status=500)


@pytest.fixture
async def midjourney() -> AsyncIterator[MidjourneyUpstream]:
    emulator = MidjourneyEmulator(api_secret=MJ_SECRET, generation_time=0.2)
    await emulator.start()
    try:
        yield MidjourneyUpstream(emulator)
    finally:
        await emulator.close()


@pytest.fixture
async def stability() -> AsyncIterator[StabilityUpstream]:
    emulator = StabilityEmulator(api_keys=[SAI_KEY], pixels=128 * 128)
    await emulator.start()
    try:
        yield StabilityUpstream(emulator)
    finally:
        await emulator.close()


async def test_midjourney_keeps_the_contract(midjourney, provider_conformance):
    await provider_conformance(midjourney)


async def test_stability_keeps_the_contract(stability, tmp_path):
    await check_provider(stability, data_dir=tmp_path)


# --- providers that break it ---------------------------------------------------------------

def broken(cls: type[mj.MidjourneyProvider]) -> Any:
    """The Midjourney kind with its provider swapped for ``cls``."""
    @asynccontextmanager
    async def make(s: Any, cfg: Any) -> AsyncIterator[mj.MidjourneyProvider]:
        async with mj.make(s, cfg) as provider:
            provider.__class__ = cls
            yield provider
    return dataclasses.replace(builtin.MIDJOURNEY, provider=cls, make=make)


class ForgetsItSubmitted(mj.MidjourneyProvider):
    def submitted(self, work: Any) -> bool:
        return False            # so a restart sends the job again


class RaisesRaw(mj.MidjourneyProvider):
    async def task(self, task: str) -> Any:
        answer = await super().task(task)
        return answer["no-such-field"]          # a KeyError, not the taxonomy


class LeaksTheKey(mj.MidjourneyProvider):
    async def send(self, path: str, body: dict[str, Any]) -> Any:
        try:
            return await super().send(path, body)
        except UpstreamAuthError:
            assert self.options.api_key is not None
            key = self.options.api_key.get_secret_value()
            raise UpstreamAuthError(f"the proxy refused {key}") from None


@pytest.mark.parametrize("cls, rule", [(ForgetsItSubmitted, "resume-without-resubmit"),
                                       (RaisesRaw, "error-mapping"),
                                       (LeaksTheKey, "no-secret")])
async def test_a_provider_breaking_the_contract_fails_naming_the_rule(midjourney, tmp_path,
                                                                     cls, rule):
    with pytest.raises(ConformanceError) as failed:
        await check_provider(midjourney, broken(cls), tmp_path)
    assert rule in {v.rule for v in failed.value.violations}, str(failed.value)
    assert f"  {rule}: " in str(failed.value)
    assert await conformance(midjourney, data_dir=tmp_path / "again") == []
