"""The worked examples of docs/extending.md hold: each diff applies to a copy of the package,
touches as many files as CONTRIBUTING.md's table says (*Where new things go*, beside the
architecture's module map), and what it adds works there (a new per-key limit through the
admin API, the job API, the OpenAPI document and the command line; a new provider kind,
a plugin of its own, behind the router; a new store kept across a restart)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "extending.md"
CONTRIBUTING = ROOT / "CONTRIBUTING.md"
WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7}


def examples() -> dict[str, str]:
    """Each example's heading (without its count) → its diff."""
    text = DOCS.read_text()
    found = {}
    for match in re.finditer(r"^## (.+?) \((\w+) files?\)\n(.*?)```diff\n(.*?)```", text,
                             re.S | re.M):
        found[match[1]] = match[4]
    return found


def stated_count(what: str) -> int:
    """How many files CONTRIBUTING.md's table says adding ``what`` touches."""
    row = re.search(rf"^\| {re.escape(what)} \| (\w+)\b", CONTRIBUTING.read_text(),
                    re.M | re.I)
    assert row, f"CONTRIBUTING.md's table has no row for {what!r}"
    return WORDS.get(row[1], 0) or int(row[1])


def applied(diff: str, tmp_path: Path) -> Path:
    """A copy of the package with ``diff`` applied."""
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "arting_daemon", copy / "arting_daemon",
                    ignore=shutil.ignore_patterns("__pycache__"))
    patch = tmp_path / "example.diff"
    patch.write_text(diff)
    done = subprocess.run(["git", "apply", "-p1", str(patch)], cwd=copy, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    return copy


def run_in(copy: Path, script: str, *args: str, path: tuple[Path, ...] = ()) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, (copy, *path)))}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], cwd=copy,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_example_touches_as_many_files_as_contributing_says():
    found = examples()
    assert set(found) >= {"A per-key limit", "A provider kind", "A store"}
    for heading, diff in found.items():
        files = set(re.findall(r"^diff --git a/(\S+)", diff, re.M))
        assert len(files) == stated_count(heading), (heading, files)


#: Starts the daemon of the tree it runs in (with the emulator as Arting), runs ``check``.
DAEMON = """
import asyncio, json, sys
from pathlib import Path
from aiohttp import ClientSession, web
import arting_daemon
from arting_daemon.app import create_app
from arting_daemon.config import Settings

assert Path(arting_daemon.__file__).parent == Path.cwd() / "arting_daemon"
ADMIN = {"Authorization": "Bearer admin-key-0123456789"}

async def daemon(data, **settings):
    app = create_app(Settings(data_dir=data, sandbox=True, port=0,
                              api_keys=["admin-key-0123456789"], expected_duration=0.05,
                              poll_min_interval=0.02, poll_max_interval=0.2, **settings))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"

async def finished(http, url, job, headers):
    for _ in range(300):
        async with http.get(f"{url}/arting/v1/jobs/{job['id']}", headers=headers) as r:
            job = await r.json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(job)
"""


def test_the_per_key_limit_example_works_everywhere_the_schema_is_read(tmp_path):
    copy = applied(examples()["A per-key limit"], tmp_path)
    run_in(copy, DAEMON + """
async def main(data):
    runner, url = await daemon(data)
    try:
        async with ClientSession() as http:
            async with http.post(url + "/arting/v1/admin/keys", headers=ADMIN,
                                 json={"name": "a", "images_per_request": 1}) as r:
                key = await r.json()
                assert r.status == 201 and key["images_per_request"] == 1, key
            async with http.post(url + "/arting/v1/admin/keys", headers=ADMIN,
                                 json={"name": "b", "images_per_request": 0}) as r:
                assert r.status == 400 and (await r.json())["error"]["param"] == \\
                    "images_per_request"
            user = {"Authorization": "Bearer " + key["key"]}
            async with http.post(url + "/arting/v1/jobs", headers=user,
                                 json={"prompt": "p", "n": 2}) as r:
                refused = await r.json()
                assert r.status == 400 and "images_per_request" in \\
                    refused["error"]["message"], refused
            async with http.post(url + "/arting/v1/jobs", headers=user,
                                 json={"prompt": "p"}) as r:
                job = await finished(http, url, await r.json(), user)
                assert job["state"] == "succeeded", job
            async with http.get(url + "/openapi.json") as r:
                doc = await r.json()
            assert "images_per_request" in doc["components"]["schemas"]["NewKey"]["properties"]
    finally:
        await runner.cleanup()

asyncio.run(main(Path(sys.argv[1])))
""", str(tmp_path / "data"))
    data = tmp_path / "cli"
    command = [sys.executable, "-m", "arting_daemon", "keys"]
    env = {**os.environ, "PYTHONPATH": str(copy)}
    made = subprocess.run([*command, "create", "--name", "c", "--images-per-request", "3",
                           "--data-dir", str(data)], cwd=copy, env=env, capture_output=True,
                          text=True, timeout=60)
    assert made.returncode == 0 and "3 images/request" in made.stderr, made.stderr
    listed = subprocess.run([*command, "list", "--json", "--data-dir", str(data)], cwd=copy,
                            env=env, capture_output=True, text=True, timeout=60)
    assert '"images_per_request": 3' in listed.stdout, listed.stdout


def test_the_provider_kind_example_makes_images_behind_the_router(tmp_path):
    copy = applied(examples()["A provider kind"], tmp_path)
    site = tmp_path / "site"            # the plugin, installed (its entry point with it)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                           "--no-build-isolation", "--quiet", "--target", str(site),
                           str(copy / "plugins" / "arting-2api-simple")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    run_in(copy, DAEMON + """
import base64, io
from PIL import Image

async def generate(request):
    body = await request.json()
    out = io.BytesIO()
    Image.new("RGB", (body["width"], body["height"]), "teal").save(out, "PNG")
    return web.json_response({"images": [base64.b64encode(out.getvalue()).decode()]
                              * body["n"]})

async def main(data):
    server = web.Application()
    server.router.add_post("/generate", generate)
    studio = web.AppRunner(server)
    await studio.setup()
    await web.TCPSite(studio, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{studio.addresses[0][1]}"
    runner, url = await daemon(data, providers=[{"name": "studio", "kind": "simple",
                                                 "base_url": base, "models": ["one"]}])
    try:
        async with ClientSession() as http:
            async with http.post(url + "/arting/v1/jobs", headers=ADMIN,
                                 json={"prompt": "p", "model": "one", "n": 2,
                                       "size": "256x256"}) as r:
                job = await finished(http, url, await r.json(), ADMIN)
            assert job["state"] == "succeeded" and job["provider"] == "studio", job
            assert [(i["width"], i["height"]) for i in job["images"]] == [(256, 256)] * 2
            async with http.get(url + "/arting/v1/status", headers=ADMIN) as r:
                status = await r.json()
            [mine] = [p for p in status["providers"] if p["name"] == "studio"]
            assert mine["kind"] == "simple" and mine["state"] == "ok", mine
    finally:
        await runner.cleanup()
        await studio.cleanup()

asyncio.run(main(Path(sys.argv[1])))
""", str(tmp_path / "data"), path=(site,))


def test_the_store_example_keeps_the_report_across_a_restart(tmp_path):
    copy = applied(examples()["A store"], tmp_path)
    run_in(copy, DAEMON + """
async def main(data):
    runner, url = await daemon(data)
    try:
        async with ClientSession() as http:
            async with http.get(url + "/arting/v1/admin/check", headers=ADMIN) as r:
                assert await r.json() is None
            async with http.post(url + "/arting/v1/admin/check", headers=ADMIN) as r:
                made = await r.json()
                assert r.status == 200 and made["target"]["mode"] == "sandbox", made
    finally:
        await runner.cleanup()
    assert (data / "check.json").is_file()
    runner, url = await daemon(data)          # the next start has it
    try:
        async with ClientSession() as http:
            async with http.get(url + "/arting/v1/admin/check", headers=ADMIN) as r:
                assert await r.json() == made
    finally:
        await runner.cleanup()

asyncio.run(main(Path(sys.argv[1])))
""", str(tmp_path / "data"))


@pytest.mark.parametrize("heading", ["A per-key limit", "A provider kind", "A store"])
def test_each_example_leaves_the_package_clean_for_the_linters(heading, tmp_path):
    copy = applied(examples()[heading], tmp_path)
    for command in (["ruff", "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"),
                     "arting_daemon"],
                    ["mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir",
                     str(tmp_path / "mypy"), "arting_daemon"]):
        done = subprocess.run([sys.executable, "-m", *command], cwd=copy,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
