"""The repository installed into SD-WebUI from its URL ("Extensions → Install from URL"):
the WebUI clones it into ``extensions/`` and, at the next start, runs its ``install.py``,
its ``preload.py``, then loads ``scripts/`` and the upscalers. All of that on a clone of
this checkout, into an emulated A1111 and Forge — also cloned the way git does where
links are not allowed (Windows)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest
from checkout import clone
from test_webui_install import project_installer, run_installer
from webui_harness import load


def webui_folder(tmp_path: Path) -> Path:
    """A WebUI install's folder as the installer's host check sees one."""
    webui = tmp_path / "stable-diffusion-webui"
    (webui / "modules").mkdir(parents=True)
    (webui / "extensions").mkdir()
    (webui / "webui.py").write_text("")
    return webui


def preload(extension: Path) -> argparse.Namespace:
    """``script_loading.preload_extensions``: each extension's ``preload(parser)``."""
    parser = argparse.ArgumentParser()
    spec = importlib.util.spec_from_file_location("preload", extension / "preload.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.preload(parser)
    return parser.parse_args(["--arting-daemon-url", "http://127.0.0.1:1234"])


@pytest.mark.parametrize("symlinks", [True, False], ids=["links", "no-links"])
def test_installed_from_its_url_the_extension_starts_in_the_webui(host, tmp_path, monkeypatch,
                                                                  daemon, symlinks):
    webui = webui_folder(tmp_path)
    extension = clone(webui / "extensions" / "arting-2api", symlinks=symlinks)
    # 1. the WebUI runs install.py with its own Python: the daemon's installer must not
    done = run_installer(extension, webui, skip_install=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not (extension / ".venv").exists()
    # 2. preload.py adds the extension's flag to the WebUI's command line
    assert preload(extension).arting_daemon_url == "http://127.0.0.1:1234"
    # 3. scripts/ and the upscaler list
    arting = load(host, extension, monkeypatch)
    assert "Arting" in [x.name for x in host.shared.sd_upscalers]
    client = sys.modules["arting_webui.daemon_client"]
    assert Path(client.__file__).read_text().startswith('"""A small client')
    arting.point_at(daemon.url)
    _, processed = arting.txt2img(prompt="p", seed=8, steps=5)
    assert processed.all_seeds == [8]
    (upscaled,) = host.extras([processed.images[0]], "Arting", 2)
    assert upscaled.size == (2 * processed.images[0].width, 2 * processed.images[0].height)
    # 4. its UI language files are where the WebUI looks for an extension's
    assert (extension / "localizations" / "zh_CN.json").is_file()


def test_the_installer_knows_it_is_inside_a_host_only_there(tmp_path):
    installer = project_installer()
    webui = webui_folder(tmp_path)
    assert installer.host_of(webui / "extensions" / "arting-2api") == "webui"
    comfy = tmp_path / "ComfyUI"
    (comfy / "comfy").mkdir(parents=True)
    assert installer.host_of(comfy / "custom_nodes" / "arting-2api") == "comfyui"
    assert installer.host_of(tmp_path / "src" / "arting-2api") is None
    assert installer.host_of(tmp_path / "extensions" / "arting-2api") is None  # no WebUI
