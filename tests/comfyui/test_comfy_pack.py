"""The node pack as a package: what it imports, what it ships, what it promises."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys

from comfy_harness import PACK, ROOT, comfy_module_name, load_like_comfyui, unload

from arting_daemon import catalog as daemon_catalog
from arting_daemon.config import Settings
from arting_daemon.generation import MAX_SEED

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def pack_pyproject() -> dict:
    return tomllib.loads((PACK / "pyproject.toml").read_text())


def test_the_built_in_choices_match_the_daemons_catalogue(pack):
    ours = sys.modules[comfy_module_name(PACK) + ".arting_comfy.catalog"]
    defaults = Settings()
    assert list(ours.MODELS) == list(daemon_catalog.MODELS)
    assert list(ours.LORAS) == list(daemon_catalog.LORAS)
    assert ours.SAMPLERS == daemon_catalog.SAMPLERS
    assert ours.DEFAULT_SAMPLER == daemon_catalog.DEFAULT_SAMPLER
    assert ours.DEFAULT_MODEL == defaults.default_model
    assert f"{ours.DEFAULT_WIDTH}x{ours.DEFAULT_HEIGHT}" == defaults.default_size
    assert (ours.MIN_SIDE, ours.MAX_SIDE, ours.SIZE_MULTIPLE, ours.MAX_IMAGES) == (
        defaults.min_side, defaults.max_side, defaults.size_multiple, defaults.max_images)
    assert ours.MAX_SEED == MAX_SEED


def test_the_pack_imports_without_comfyui_torch_numpy_pillow_or_network():
    """In a fresh interpreter where those imports fail and sockets refuse to open."""
    script = f"""
import importlib.abc, importlib.util, json, socket, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {{"torch", "numpy", "PIL", "comfy", "server", "folder_paths"}}:
            raise ImportError("blocked: " + name)

sys.meta_path.insert(0, Block())
def no_network(*args, **kwargs):
    raise OSError("no network")
socket.socket.connect = no_network
socket.create_connection = no_network

folder = {str(PACK)!r}
name = folder.replace(".", "_x_")
spec = importlib.util.spec_from_file_location(name, folder + "/__init__.py")
module = importlib.util.module_from_spec(spec)
sys.modules[name] = module
spec.loader.exec_module(module)
types = {{name: sorted(cls.INPUT_TYPES()) for name, cls in module.NODE_CLASS_MAPPINGS.items()}}
print(json.dumps({{"nodes": list(module.NODE_CLASS_MAPPINGS), "inputs": types,
                  "heavy": sorted(m for m in ("torch", "numpy", "PIL") if m in sys.modules)}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd="/")
    assert done.returncode == 0, done.stderr
    inputs = ["hidden", "optional", "required"]
    assert json.loads(done.stdout) == {
        "nodes": ["ArtingGenerate", "ArtingUpscale"],
        "inputs": {"ArtingGenerate": inputs, "ArtingUpscale": inputs}, "heavy": []}


def test_the_pack_is_python_3_10_syntax():
    for path in PACK.rglob("*.py"):
        ast.parse(path.read_text(), str(path), feature_version=(3, 10))


def test_the_pack_pins_nothing_comfyui_ships():
    project = pack_pyproject()["project"]
    assert project["dependencies"] == []
    requirements = PACK / "requirements.txt"
    lines = requirements.read_text().splitlines() if requirements.exists() else []
    pinned = [ln for ln in lines if ln.strip().lower().startswith(("torch", "numpy", "pillow"))]
    assert pinned == []


def test_the_registry_metadata():
    """What ``comfy node publish`` (run in comfyui_nodes/) checks, and what only the
    publisher can fill in (their publisher id and the repository's public URL)."""
    meta = pack_pyproject()
    top = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name = meta["project"]["name"]
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}", name) and "comfyui" not in name.lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", meta["project"]["version"])
    assert meta["project"]["description"] and meta["project"]["license"]
    assert meta["project"]["version"] == top["version"]
    assert meta["project"]["requires-python"] == ">=3.10"
    assert {"PublisherId", "DisplayName", "Icon"} <= set(meta["tool"]["comfy"])
    assert "Repository" in meta["project"]["urls"]
    assert "__pycache__/" in (PACK / ".comfyignore").read_text().splitlines()


def widget_inputs(types: dict) -> list[tuple[str, tuple]]:
    """The inputs that are widgets (not sockets), in the order the frontend lays them out."""
    sockets = {"IMAGE", "MASK", "LATENT", "MODEL", "CONDITIONING"}
    return [(name, spec) for group in ("required", "optional")
            for name, spec in types[group].items()
            if isinstance(spec[0], list) or spec[0] not in sockets]


def check_value(name: str, spec: tuple, value) -> None:
    kind, options = spec[0], spec[1] if len(spec) > 1 else {}
    if isinstance(kind, list):
        assert value in kind, name
    elif kind in ("INT", "FLOAT"):
        assert options["min"] <= value <= options["max"], name
        assert isinstance(value, int if kind == "INT" else (int, float)), name
    else:
        assert isinstance(value, {"STRING": str, "BOOLEAN": bool}[kind]), name


def test_the_example_workflow_fits_the_node(pack):
    types = pack.NODE_CLASS_MAPPINGS["ArtingGenerate"].INPUT_TYPES()
    flow = json.loads((PACK / "examples" / "arting_generate.json").read_text())
    nodes = {n["id"]: n for n in flow["nodes"]}
    ours, preview = nodes[1], nodes[2]
    assert (ours["type"], preview["type"]) == ("ArtingGenerate", "PreviewImage")
    values = list(ours["widgets_values"])
    widgets = widget_inputs(types)
    assert len(values) == len(widgets) + 1  # + the seed's control_after_generate mode
    seed_at = [name for name, _ in widgets].index("seed")
    assert values.pop(seed_at + 1) in ("fixed", "increment", "decrement", "randomize")
    for (name, spec), value in zip(widgets, values):
        check_value(name, spec, value)
    assert [i["name"] for i in ours["inputs"]] == ["image", "mask"]
    assert flow["links"] == [[1, 1, 0, 2, 0, "IMAGE"]]
    assert ours["outputs"][0]["links"] == [1] and preview["inputs"][0]["link"] == 1


def test_the_api_format_example_fits_the_node(pack):
    types = pack.NODE_CLASS_MAPPINGS["ArtingGenerate"].INPUT_TYPES()
    prompt = json.loads((PACK / "examples" / "arting_generate_api.json").read_text())
    ours = prompt["1"]["inputs"]
    assert prompt["1"]["class_type"] == "ArtingGenerate"
    assert set(types["required"]) <= set(ours)
    for name, value in ours.items():
        check_value(name, {**types["required"], **types["optional"]}[name], value)
    assert prompt["2"] == {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}


def test_install_py_links_the_pack_where_comfyui_finds_it(comfy_host, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("arting_install", ROOT / "install.py")
    install = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(install)
    comfyui = tmp_path / "ComfyUI.v0"
    comfyui.mkdir()
    install.link(PACK, comfyui, "custom_nodes", pack_pyproject()["project"]["name"])
    install.link(PACK, comfyui, "custom_nodes", pack_pyproject()["project"]["name"])
    assert "already links" in capsys.readouterr().out
    folder = comfyui / "custom_nodes" / "arting-2api"
    assert folder.resolve() == PACK
    try:
        module = load_like_comfyui(folder)
        assert "_x_" in module.__name__
        assert list(module.NODE_CLASS_MAPPINGS) == ["ArtingGenerate", "ArtingUpscale"]
    finally:
        unload(comfy_module_name(folder))
