"""The repository installed into ComfyUI from its URL (ComfyUI-Manager's "Install via Git
URL"): Manager clones it into ``custom_nodes/``, installs its ``requirements.txt`` and
runs its ``install.py`` there (with ``COMFYUI_PATH`` set), and ComfyUI imports the
folder's ``__init__.py`` and reads its ``locales/``. On a clone of this checkout, into the
stub host — also cloned the way git does where links are not allowed (Windows)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from checkout import clone
from comfy_harness import comfy_module_name, load_like_comfyui, translations, unload


@pytest.mark.parametrize("symlinks", [True, False], ids=["links", "no-links"])
def test_installed_from_its_url_the_nodes_load_in_comfyui(comfy_host, tmp_path, symlinks):
    comfyui = tmp_path / "ComfyUI"
    (comfyui / "comfy").mkdir(parents=True)
    folder = clone(comfyui / "custom_nodes" / "arting-2api", symlinks=symlinks)
    # Manager: requirements.txt (none: nothing beyond ComfyUI), then install.py in place
    assert not (folder / "requirements.txt").exists()
    done = subprocess.run([sys.executable, "install.py"], cwd=folder, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "COMFYUI_PATH": str(comfyui)})
    assert (done.returncode, done.stderr) == (0, "")
    assert not (folder / ".venv").exists()          # the daemon's installer did not run
    try:
        module = load_like_comfyui(folder)
        assert list(module.NODE_CLASS_MAPPINGS) == ["ArtingGenerate", "ArtingUpscale"]
        assert module.NODE_DISPLAY_NAME_MAPPINGS["ArtingUpscale"] == "Arting Upscale"
        node = module.NODE_CLASS_MAPPINGS["ArtingGenerate"]
        assert "prompt" in node.INPUT_TYPES()["required"]
    finally:
        unload(comfy_module_name(folder))
    served = translations(comfyui / "custom_nodes")
    if symlinks:
        assert served["zh"]["nodeDefs"]["ArtingGenerate"]["display_name"] == "Arting 生成"
    else:   # the link is a file there: ComfyUI finds no locales (and says nothing)
        assert served == {}


def test_the_test_command_runs_in_a_clone_under_its_default_name(tmp_path):
    """``git clone …/arting-2api`` makes a folder whose name is no Python package name;
    pytest still sets the repository's ``__init__.py`` (the ComfyUI entry) up as a lone
    module, which must not fail every test (it once did: a relative import)."""
    folder = clone(tmp_path / "arting-2api")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_retry.py"], cwd=folder, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout
