"""Loading the node pack the way ComfyUI does, and the stub host the tests run it in.

The stubs (``host_stubs/``) are our own stand-ins with the signatures and behaviour of ComfyUI's
``comfy.utils``, ``comfy.model_management`` and ``server`` (Comfy-Org/ComfyUI 0.3.64).
"""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "comfyui_nodes"
STUBS = Path(__file__).resolve().parent / "host_stubs"


def comfy_module_name(folder: Path) -> str:
    """The name ComfyUI's ``load_custom_node`` gives a custom-node folder."""
    return str(folder).replace(".", "_x_")


def load_like_comfyui(folder: Path) -> ModuleType:
    """Import a custom-node folder exactly as ComfyUI does (nodes.py, load_custom_node)."""
    name = comfy_module_name(folder)
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def translations(custom_nodes: Path) -> dict:
    """What ComfyUI's ``CustomNodeManager.build_translations`` serves the frontend: for
    each folder in ``custom_nodes/``, ``locales/<lang>/main.json`` with ``nodeDefs.json``
    (and ``commands.json``, ``settings.json``) under their names, merged per language;
    folders without a ``locales`` directory (or a broken link to one) add nothing."""
    out: dict = {}
    for folder in sorted(custom_nodes.glob("*/")):
        for lang in (folder / "locales").glob("*/"):
            found = {}
            main = lang / "main.json"
            if main.is_file():
                found = json.loads(main.read_text(encoding="utf-8"))
            for extra in ("nodeDefs", "commands", "settings"):
                path = lang / f"{extra}.json"
                if path.is_file():
                    found[extra] = json.loads(path.read_text(encoding="utf-8"))
            if found:
                out.setdefault(lang.name, {}).update(found)
    return out


def unload(name: str) -> None:
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


@dataclass
class ComfyHost:
    """The stub host of one test, and what the node sent to it."""

    utils: ModuleType
    mm: ModuleType
    server: ModuleType
    progress: list[tuple[int, int, str | None]] = field(default_factory=list)

    def hook(self, value, total, preview_image, prompt_id=None, node_id=None):
        """Like ``main.py``'s ``hijack_progress`` hook: every update is an interrupt point."""
        self.mm.throw_exception_if_processing_interrupted()
        self.progress.append((value, total, node_id))

    def interrupt(self) -> None:
        """What ComfyUI's Cancel button (``POST /interrupt``) does."""
        self.mm.interrupt_current_processing(True)

    def texts(self) -> list[tuple[str, str]]:
        """(node id, text) of every progress text, decoded from the binary messages."""
        out = []
        for event, data, _sid in self.server.PromptServer.instance.sent:
            if event == self.server.BinaryEventTypes.TEXT:
                (n,) = struct.unpack(">I", data[:4])
                out.append((data[4:4 + n].decode(), data[4 + n:].decode()))
        return out


def load_stub(name: str, path: Path, package: bool = False) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[str(path.parent)] if package else None)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
