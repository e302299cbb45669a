"""The Dockerfile's image, run as a user runs it: ``docker run`` with the sandbox, clients
on the published port, ``docker stop``, a new container on the same volume.

Containers publish on 127.0.0.1 only, on a port Docker picks; the health check is the
image's own, run every second here instead of every 30 s (``--health-interval``).
"""

from __future__ import annotations

import io
import re
import time
import uuid

import httpx
import openai
import pytest
from PIL import Image

from docker_harness import (ROOT, Docker, cost_by_dependency, distributions, elf_sections,
                            host_extra_cas, wait_http)

#: The first of them builds the image (and, where none is cached, its base): minutes.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

KEY = "container-key-0123456789"
MiB = 1024 * 1024


def run_daemon(docker: Docker, image: str, volume: str, *args: str, **env: str) -> str:
    """``docker run -d`` the image on loopback with a fast health check; its name."""
    name = docker.name("container")
    flags = [f"--env={k}={v}" for k, v in env.items()]
    docker("run", "--detach", "--name", name, "--publish", "127.0.0.1::8090",
           "--volume", f"{volume}:/data", "--health-interval=1s", *flags, image, *args)
    return name


@pytest.fixture
def secured(docker: Docker, image: str):
    """A sandboxed daemon with an API key and an Arting token, as an operator runs it."""
    token = str(uuid.uuid4())
    volume = docker.name("volume")
    env = {"API_MASTER_KEY": KEY, "ARTING_AUTH_TOKEN": token}
    name = run_daemon(docker, image, volume, "--sandbox", "--log-level", "debug", **env)
    docker.wait_healthy(name)
    return name, volume, env


def test_the_image_is_small_and_keeps_no_build_secret(docker, image, base):
    """Small by construction (README, "Docker"): the venv without what only installs
    (pip, setuptools), Swagger UI's files without Flask, compiled modules without their
    debugging symbols, no tests. What each dependency costs goes to
    ``artifacts/docker/image-size.txt`` (and into the message if the bound is crossed)."""
    grown = docker.inspect(image)["Size"] - docker.inspect(base)["Size"]
    found = distributions(docker, image)
    lines = [f"the image adds {grown / MiB:.1f} MiB ({grown / 1e6:.1f} MB) to {base}",
             f"{sum(f['bytes'] for f in found.values()) / 1e6:6.1f} MB  the venv's "
             "distributions, of which:"]
    for name, more, size in cost_by_dependency(found):
        lines.append(f"{size / 1e6:6.1f} MB  {name}" + (f" (with {', '.join(more)})"
                                                        if more else ""))
    report = "\n".join(lines)
    (ROOT / "artifacts" / "docker").mkdir(parents=True, exist_ok=True)
    (ROOT / "artifacts" / "docker" / "image-size.txt").write_text(report + "\n")
    assert grown <= 80 * MiB, report
    assert not {"pip", "setuptools", "wheel", "flask", "werkzeug"} & found.keys(), report
    config = docker.inspect(image)["Config"]
    assert not any(e.startswith(("PIP_", "REQUESTS_CA_BUNDLE=")) for e in config["Env"])
    history = docker("history", "--no-trunc", image).stdout
    proxy_cas = host_extra_cas()
    swagger_ui = set()
    for path, content in docker.image_files(image):
        assert not path.startswith("run/secrets/"), path
        assert not path.endswith(("pip.conf", "pip.ini")), f"a pip configuration: {path}"
        if path.startswith("opt/arting/"):
            assert not re.search(r"/site-packages/.+/tests?/", path), path
            if path.endswith(".so"):        # a compiled module (not a wheel's own library)
                assert ".debug_info" not in elf_sections(content), \
                    f"{path} keeps its debugging symbols"
            if "/arting_daemon/static/swagger-ui/" in path:
                swagger_ui.add(path.rsplit("/", 1)[1])
        for line in proxy_cas:
            assert line.encode() not in content, f"this machine's CA is in {path}"
    for line in proxy_cas:
        assert line not in history
    assert {"swagger-ui-bundle.js", "swagger-ui.css", "LICENSE"} <= swagger_ui


def test_an_open_api_on_the_network_is_refused(docker, image):
    refused = docker("run", "--rm", image, check=False)
    assert refused.returncode == 2
    assert "Refusing to listen on 0.0.0.0" in refused.stderr
    assert "ARTING_PUBLISHED_HOST=127.0.0.1" in refused.stderr
    published = docker("run", "--rm", "--env", "ARTING_PUBLISHED_HOST=0.0.0.0", image,
                       check=False)
    assert published.returncode == 2 and "published on 0.0.0.0" in published.stderr


def test_it_serves_openai_clients_as_a_non_root_daemon_and_turns_healthy(docker, secured):
    name, _, env = secured
    assert docker.inspect(name)["State"]["Health"]["Status"] == "healthy"
    status = docker("exec", name, "cat", "/proc/1/status").stdout
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert uids and all(uid != "0" for uid in uids), status
    cmdline = docker("exec", name, "cat", "/proc/1/cmdline").stdout
    assert "arting-daemon" in cmdline   # the daemon is PID 1: SIGTERM reaches it

    url = docker.published_url(name)
    wait_http(url + "/healthz")
    assert httpx.get(url + "/docs/swagger-ui-bundle.js").status_code == 200   # /docs works
    client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
    made = client.images.generate(prompt="a lighthouse", size="512x512", response_format="url")
    assert made.data[0].url.startswith(url + "/arting/v1/images/")
    png = httpx.get(made.data[0].url).content
    assert Image.open(io.BytesIO(png)).size == (512, 512)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).models.list()

    logs = docker.logs(name)
    assert "sandbox: Arting emulator" in logs and "listening on http://0.0.0.0:8090" in logs
    assert "sandbox: Arting emulator" in docker("logs", name).stdout    # the log is on stdout
    for secret in env.values():
        assert secret not in logs


def test_stop_is_graceful_and_the_volume_keeps_the_images(docker, image, secured):
    name, volume, env = secured
    url = docker.published_url(name)
    auth = {"Authorization": f"Bearer {KEY}"}
    wait_http(url + "/healthz")
    done = httpx.post(url + "/arting/v1/jobs", json={"prompt": "a harbour", "seed": 7},
                      headers=auth).json()
    done = follow(url, done["id"], auth, ("succeeded",))
    # A job still running when SIGTERM comes: the daemon lets it finish, then exits 0.
    running = httpx.post(url + "/arting/v1/jobs", json={"prompt": "a night sky"},
                         headers=auth).json()
    follow(url, running["id"], auth, ("running",))
    started = time.monotonic()
    docker("stop", "--time", "10", name, timeout=60)
    took = time.monotonic() - started
    state = docker.inspect(name)["State"]
    assert state["ExitCode"] == 0 and not state["OOMKilled"], state
    assert took < 10, f"docker stop took {took:.1f} s"
    logs = docker.logs(name)
    for secret in env.values():
        assert secret not in logs

    # A new container on the same volume serves what the old one made.
    again = run_daemon(docker, image, volume, "--sandbox", **env)
    docker.wait_healthy(again)
    url = docker.published_url(again)
    wait_http(url + "/healthz")
    finished = httpx.get(f"{url}/arting/v1/jobs/{running['id']}", headers=auth).json()
    assert finished["state"] == "succeeded", finished
    for image_ref in done["images"] + finished["images"]:
        got = httpx.get(f"{url}/arting/v1/images/{image_ref['hash']}.png")
        assert got.status_code == 200 and got.content.startswith(b"\x89PNG")
    for secret in env.values():
        assert secret not in docker.logs(again)
        found = docker("run", "--rm", "--volume", f"{volume}:/data:ro", "--entrypoint", "grep",
                       image, "-rlF", secret, "/data", check=False)
        assert found.returncode == 1, f"a secret at rest in {found.stdout}"


def follow(url: str, job_id: str, headers: dict, states: tuple[str, ...],
           timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{url}/arting/v1/jobs/{job_id}", headers=headers).json()
        if job["state"] in states:
            return job
        assert job["state"] not in ("failed", "cancelled") and time.monotonic() < deadline, job
        time.sleep(0.1)
