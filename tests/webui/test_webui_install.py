"""How the extension gets into SD-WebUI: linked by ``install.py --webui`` (the shared
client is a relative symlink that must survive the link), its own ``install.py``
(installs nothing), and what it may import (the host's Python, 3.10 syntax)."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from webui_harness import EXTENSION, installed, load
from webui_stubs import A1111, Host

ROOT = EXTENSION.parent
SHARED = ROOT / "comfyui_nodes" / "arting_comfy"


def project_installer():
    spec = importlib.util.spec_from_file_location("arting_project_install", ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def extension_sources() -> list[Path]:
    return sorted(p for p in EXTENSION.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("name", ["daemon_client.py", "catalog.py"])
def test_client_and_catalogue_are_one_file_shared_with_the_node_pack(name):
    link = EXTENSION / "arting_webui" / name
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.resolve() == (SHARED / name).resolve()


def test_linked_into_a_webui_folder_it_loads_and_runs(host, tmp_path, monkeypatch, daemon):
    webui = tmp_path / "stable-diffusion-webui"
    webui.mkdir()
    project_installer().link(EXTENSION, webui, "extensions", "arting-2api")
    linked = webui / "extensions" / "arting-2api"
    assert linked.is_symlink()
    arting = load(host, linked, monkeypatch)
    client = sys.modules["arting_webui.daemon_client"]
    assert Path(client.__file__).resolve() == (SHARED / "daemon_client.py").resolve()  # one file
    arting.point_at(daemon.url)
    _, processed = arting.txt2img(prompt="p", seed=3, steps=5)
    assert processed.all_seeds == [3]


def test_where_links_are_not_allowed_the_copy_carries_the_client(host, tmp_path, monkeypatch,
                                                                 daemon):
    def refuse(*args, **kwargs):
        raise OSError("symlinks are not allowed here")

    monkeypatch.setattr(Path, "symlink_to", refuse)
    webui = tmp_path / "webui"
    webui.mkdir()
    project_installer().link(EXTENSION, webui, "extensions", "arting-2api")
    copied = webui / "extensions" / "arting-2api"
    for shared in ("daemon_client.py", "catalog.py"):
        copy = copied / "arting_webui" / shared
        assert not copied.is_symlink() and copy.is_file() and not copy.is_symlink()
    arting = load(host, copied, monkeypatch)
    arting.point_at(daemon.url)
    assert arting.txt2img(prompt="p", seed=4, steps=5)[1].all_seeds == [4]


def run_installer(extension: Path, webui: Path, skip_install: bool) -> subprocess.CompletedProcess:
    """As SD-WebUI runs an extension's install.py: a subprocess in the webui folder,
    with the webui folder on PYTHONPATH so ``import launch`` works."""
    (webui / "launch.py").write_text(
        "import argparse\n"
        f"args = argparse.Namespace(skip_install={skip_install})\n"
        "def run_pip(*a, **k):\n    raise SystemExit('install.py must not install anything')\n")
    env = {**os.environ, "PYTHONPATH": str(webui)}
    return subprocess.run([sys.executable, str(extension / "install.py")], cwd=webui, env=env,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("skip_install", [False, True])
def test_install_py_installs_nothing(tmp_path, skip_install):
    done = run_installer(EXTENSION, tmp_path, skip_install)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_install_py_says_when_the_client_did_not_come_along(tmp_path):
    broken = tmp_path / "arting-2api"
    shutil.copytree(EXTENSION, broken, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (broken / "arting_webui" / "daemon_client.py").unlink()
    done = run_installer(broken, tmp_path, skip_install=False)
    assert done.returncode == 0 and "daemon_client.py is missing" in done.stdout
    assert "--webui" in done.stdout
    assert run_installer(broken, tmp_path, skip_install=True).stdout == ""


def test_scripts_folder_holds_only_the_script():
    assert [p.name for p in (EXTENSION / "scripts").iterdir()
            if p.name != "__pycache__"] == ["arting_remote.py"]


@pytest.mark.parametrize("path", extension_sources(), ids=lambda p: str(p.relative_to(EXTENSION)))
def test_python_310_syntax_and_only_host_imports(path):
    """SD-WebUI's Python is 3.10 and brings Pillow and gradio; nothing else may be
    needed, so the extension's install.py has nothing to install."""
    tree = ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))
    allowed = set(sys.stdlib_module_names) | {"modules", "gradio", "PIL", "arting_webui",
                                              "launch"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def test_the_emulated_host_leaves_nothing_behind(tmp_path):
    def hosted() -> set[str]:
        return {n for n in sys.modules
                if n.split(".")[0] in ("modules", "gradio", "arting_webui")}

    with installed(Host(A1111, tmp_path)) as host:
        host.load_scripts(EXTENSION)
        assert {"arting_webui.remote", "modules.shared", "gradio"} <= hosted()
    assert hosted() == set()


def test_linking_into_a_missing_webui_folder_says_what_to_give(tmp_path):
    with pytest.raises(SystemExit, match="the one that contains `extensions`"):
        project_installer().link(EXTENSION, tmp_path / "nowhere", "extensions", "arting-2api")


def test_the_extension_index_entry_is_in_the_index_format():
    """``extensions/<name>.json`` of AUTOMATIC1111/stable-diffusion-webui-extensions; its
    ``url`` (the repository's public URL) and ``added`` date are the publisher's to fill."""
    entry = json.loads((EXTENSION / "extension-index.json").read_text())
    assert set(entry) == {"name", "url", "description", "added", "tags"}
    assert entry["name"] == "arting-2api" and entry["description"]
    assert set(entry["tags"]) <= {"script", "online", "tab", "extras", "manipulations",
                                  "UI related", "editing", "query", "models"}
