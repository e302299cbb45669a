"""Provider plugins as a user meets them: the example plugin's wheel installed into a
fresh environment with the daemon's makes images through the OpenAI API against the
ComfyUI API emulator; without it, its configuration stops start-up naming the kind and
its package; a broken plugin is reported and left out while the daemon serves the rest;
``arting-daemon providers`` lists what is installed. All offline: the wheels are built
here, the dependencies are this environment's."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import venv
from pathlib import Path

import pytest
from openai import OpenAI
from processes import DaemonProcess, Emulator, first_line

from arting_2api_comfyui.emulator import ComfyUIEmulator
from arting_daemon.providers.contract import CONTRACT_VERSION, compatible
from arting_daemon.providers.kinds import load

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "plugins" / "arting-2api-comfyui"
CHECKPOINT = "studio_photo_v2"


def clean_env() -> dict[str, str]:
    """The environment without this checkout's settings, paths and virtual environment."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("ARTING_", "PYTHON", "VIRTUAL_ENV"))}


def run(*command: str | Path, **kw) -> subprocess.CompletedProcess:
    """``command``, by default away from this checkout (whose package ``-c`` would find)."""
    kw.setdefault("cwd", Path("/"))
    kw.setdefault("env", clean_env())
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True,
                          timeout=300, **kw)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """A new virtual environment with the daemon's wheel (built here) and, through a
    ``.pth``, this environment's third-party packages: neither arting-2api nor any of
    its plugins comes from here."""
    base = tmp_path_factory.mktemp("fresh")
    wheels = base / "wheels"
    skip = shutil.ignore_patterns(".*", "__pycache__", "*.egg-info", "build", "tests", "docs",
                                  "bench", "plugins", "site", "deploy")
    for project in (ROOT, PLUGIN):        # built from a copy: the build leaves files behind
        copy = base / "src" / project.name
        shutil.copytree(project, copy, ignore=skip)
        run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
            "--no-index", "--quiet", "-w", wheels, copy)
    deps = base / "deps"
    deps.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        if not entry.name.lower().startswith(("arting", "__editable__", "_arting")) and \
                entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    env = base / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    (Path(purelib.stdout.strip()) / "deps.pth").write_text(f"{deps}\n")
    run(python, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet",
        *sorted(wheels.glob("arting_2api-*.whl")))
    return env


@pytest.fixture
def comfyui():
    emulator = Emulator(ComfyUIEmulator)
    try:
        yield emulator
    finally:
        emulator.close()


def config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "arting.toml"
    path.write_text(f'[[providers]]\nname = "studio"\nkind = "comfyui"\nbase_url = "{url}"\n'
                    f'models = ["{CHECKPOINT}"]\n')
    return path


def daemon(env: Path, tmp_path: Path, settings: Path) -> subprocess.Popen:
    return subprocess.Popen([env / "bin" / "arting-daemon", "--sandbox", "--port", "0",
                             "--config", settings, "--data-dir", tmp_path / "data"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env(), cwd=tmp_path)


def stopped(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.kill()
    _, err = proc.communicate(timeout=30)
    return err


def test_the_example_plugins_wheel_makes_images_through_the_openai_api(fresh, comfyui,
                                                                      tmp_path):
    python = fresh / "bin" / "python"
    run(python, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet",
        *sorted((fresh.parent / "wheels").glob("arting_2api_comfyui-*.whl")))
    try:
        listed = json.loads(run(fresh / "bin" / "arting-daemon", "providers", "--json").stdout)
        assert {"kind": "comfyui", "package": "arting-2api-comfyui", "version": "0.1.0",
                "contract": CONTRACT_VERSION, "features": []} in listed["kinds"]
        found = run(python, "-c", "import arting_daemon, arting_2api_comfyui as p; "
                    "print(arting_daemon.__file__, p.__file__)").stdout
        assert str(ROOT) not in found and str(fresh) in found      # the wheels', not ours
        proc = daemon(fresh, tmp_path, config(tmp_path, comfyui.url))
        try:
            line = first_line(proc, 120)
            assert "listening on" in line, line + stopped(proc)
            url = line.split("listening on ", 1)[1].split()[0]
            client = OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=60, max_retries=0)
            made = client.images.generate(model=CHECKPOINT, prompt="a paper boat at sea",
                                          size="512x512", response_format="b64_json")
            assert base64.b64decode(made.data[0].b64_json).startswith(b"\x89PNG")
        finally:
            stopped(proc)
        prompts = list(comfyui.sandbox.prompts.values())
        assert len(prompts) == 1
        graph = prompts[0].graph
        assert graph["6"]["inputs"]["text"] == "a paper boat at sea"
        assert graph["4"]["inputs"]["ckpt_name"] == f"{CHECKPOINT}.safetensors"
    finally:
        run(python, "-m", "pip", "uninstall", "--yes", "--quiet", "arting-2api-comfyui")


def test_without_the_plugin_its_configuration_stops_start_up_naming_kind_and_package(
        fresh, tmp_path):
    proc = daemon(fresh, tmp_path, config(tmp_path, "http://127.0.0.1:9"))
    try:
        assert proc.wait(120) == 2
    finally:
        err = stopped(proc)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "`comfyui`" in lines[0] and "pip install arting-2api-comfyui" in lines[0], err


def broken_plugins(where: Path) -> Path:
    """A distribution with two broken kinds (an import error, a contract from the future),
    on a path of its own."""
    site = where / "site"
    dist = site / "arting_2api_broken-0.3.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: arting-2api-broken\n"
                                   "Version: 0.3\n")
    (dist / "entry_points.txt").write_text(
        "[arting_2api.providers]\nghost = broken_ghost:KIND\nfuture = broken_future:KIND\n")
    (site / "broken_ghost.py").write_text("import no_such_module_anywhere\n")
    (site / "broken_future.py").write_text(
        "from arting_daemon.providers import builtin\nimport dataclasses\n"
        "KIND = dataclasses.replace(builtin.OPENAI, contract='2.0')\n")
    return site


def test_a_broken_plugin_is_reported_and_left_out_while_the_daemon_serves_the_rest(tmp_path):
    site = broken_plugins(tmp_path)
    env = {"PYTHONPATH": str(site)}
    listed = run(sys.executable, "-m", "arting_daemon", "providers", "--json",
                 env={**os.environ, **env}, cwd=ROOT)
    left_out = json.loads(listed.stdout)["left_out"]
    assert any("`ghost` (arting-2api-broken 0.3) failed to import (ModuleNotFoundError"
               in line for line in left_out), left_out
    assert any("`future` (arting-2api-broken 0.3) was written for provider contract 2.0"
               in line for line in left_out), left_out
    assert {"arting", "comfyui"} <= {k["kind"] for k in json.loads(listed.stdout)["kinds"]}
    arting = Emulator()
    (tmp_path / "data").mkdir()
    proc = DaemonProcess(tmp_path / "data", arting.url, **env)
    try:
        client = OpenAI(base_url=f"{proc.url}/v1", api_key="unused", timeout=60,
                        max_retries=0)
        made = client.images.generate(prompt="a lantern", response_format="b64_json")
        assert base64.b64decode(made.data[0].b64_json)[:4] in (b"\x89PNG", b"RIFF")
    finally:
        proc.stop()
        arting.close()
    log = proc.log.read_text()
    assert "provider plugin `ghost`" in log and "provider plugin `future`" in log, log


def test_the_contract_rule_is_the_same_major_and_a_minor_no_newer():
    assert compatible("1.0", "1.2") and compatible("1.2", "1.2")
    assert not compatible("1.3", "1.2") and not compatible("2.0", "1.2")
    assert not compatible("0.9", "1.0") and not compatible("one", "1.0")
    assert load([]).kinds == {}


def test_the_guides_minimal_provider_is_the_example_the_project_runs():
    """docs/plugins/writing-a-provider.md shows in full what docs/extending.md's provider
    example adds (which tests/test_extending.py applies, installs and runs)."""
    guide = (ROOT / "docs" / "plugins" / "writing-a-provider.md").read_text()
    example = (ROOT / "docs" / "extending.md").read_text()
    for name, fence in (("pyproject.toml", "toml"), ("arting_2api_simple.py", "python")):
        diff = example.split(f"+++ b/plugins/arting-2api-simple/{name}\n", 1)[1]
        added = [line[1:] for line in diff.split("\n")[1:]]
        added = added[:next(i for i, line in enumerate(added) if not diff.split("\n")[1:][i]
                            .startswith("+"))]
        assert f"```{fence}\n" + "\n".join(added) + "\n```" in guide, name


def test_an_old_builds_metadata_ahead_on_the_path_hides_no_kind(tmp_path):
    """An ``.egg-info`` from before the kinds were entry points, in the working directory
    (first on ``python -m``'s path), does not hide the installed distribution's kinds."""
    old = tmp_path / "arting_2api.egg-info"
    old.mkdir()
    (old / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: arting-2api\nVersion: 0.0.1\n")
    (old / "entry_points.txt").write_text("[console_scripts]\n"
                                          "arting-daemon = arting_daemon.__main__:main\n")
    listed = run(sys.executable, "-m", "arting_daemon", "providers", "--json", cwd=tmp_path,
                 env={**clean_env(), "PYTHONPATH": str(ROOT)})
    found = json.loads(listed.stdout)
    assert {"arting", "a1111", "openai", "midjourney", "stability"} <= \
        {k["kind"] for k in found["kinds"]} and found["left_out"] == [], found


def test_a_comfyui_server_is_reached_from_the_apis_and_falls_back(make_daemon, comfyui):
    """The ComfyUI provider behind the router: its checkpoints in the catalogue, a job
    through the AUTOMATIC1111 API and the job API, and Arting when ComfyUI fails."""
    import httpx
    daemon = make_daemon(providers=[{"name": "studio", "kind": "comfyui",
                                     "base_url": comfyui.url}],
                         fallbacks={"*": ["arting/*"]})
    for _ in range(200):
        models = httpx.get(f"{daemon.url}/v1/models").json()["data"]
        if any(m["id"] == "studio/sd_xl_base_1.0" for m in models):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(models)
    made = httpx.post(f"{daemon.url}/sdapi/v1/txt2img", timeout=60, json={
        "prompt": "a kite", "negative_prompt": "rain", "steps": 4, "seed": 5,
        "width": 320, "height": 256, "override_settings": {
            "sd_model_checkpoint": "studio/sd_xl_base_1.0"}}).json()
    assert base64.b64decode(made["images"][0]).startswith(b"\x89PNG"), made
    graph = list(comfyui.sandbox.prompts.values())[-1].graph
    assert (graph["6"]["inputs"]["text"], graph["7"]["inputs"]["text"],
            graph["3"]["inputs"]["seed"], graph["5"]["inputs"]["width"]) == \
        ("a kite", "rain", 5, 320)
    comfyui.do(comfyui.sandbox.fault, "server_error")
    job = daemon.run_job(model="studio/sd_xl_base_1.0")
    assert job["state"] == "succeeded" and job["provider"] == "arting", job
    assert [f["from"] for f in job["fallbacks"]] == ["studio"], job
