"""Fixtures for the node pack: ComfyUI's host modules as faithful stubs, and the pack
loaded the way ComfyUI loads a custom-node folder.

``comfy_host`` puts the stubs into ``sys.modules`` for one test and installs a progress
hook like ComfyUI's ``main.py`` does (raise if the user interrupted, then record the
update); everything is removed again afterwards, so no test sees another's modules.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from types import ModuleType

import pytest

from comfy_harness import (PACK, STUBS, ComfyHost, comfy_module_name, load_like_comfyui,
                           load_stub, unload)


@pytest.fixture
def comfy_host(monkeypatch) -> ComfyHost:
    comfy = load_stub("comfy", STUBS / "comfy" / "__init__.py", package=True)
    utils = load_stub("comfy.utils", STUBS / "comfy" / "utils.py")
    mm = load_stub("comfy.model_management", STUBS / "comfy" / "model_management.py")
    server = load_stub("server", STUBS / "server.py")
    comfy.utils, comfy.model_management = utils, mm
    for name, module in (("comfy", comfy), ("comfy.utils", utils),
                         ("comfy.model_management", mm), ("server", server)):
        monkeypatch.setitem(sys.modules, name, module)
    server.PromptServer()
    host = ComfyHost(utils=utils, mm=mm, server=server)
    utils.set_progress_bar_global_hook(host.hook)
    return host


@pytest.fixture
def pack(comfy_host) -> Iterator[ModuleType]:
    """The node pack, imported as ComfyUI would import it from its folder."""
    name = comfy_module_name(PACK)
    try:
        yield load_like_comfyui(PACK)
    finally:
        unload(name)


@pytest.fixture
def node(pack):
    return pack.NODE_CLASS_MAPPINGS["ArtingGenerate"]()


@pytest.fixture(autouse=True)
def no_leaked_modules() -> Iterator[None]:
    """After each test, neither the stubs nor the pack may be left in ``sys.modules``."""
    yield
    pack_name = comfy_module_name(PACK)
    leaked = [k for k in sys.modules
              if k in ("comfy", "server") or k.startswith(("comfy.", pack_name))]
    assert leaked == []
