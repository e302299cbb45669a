"""``compose.yaml`` brought up and down as a user does, with ``.env.example`` filled in:
Debian's ``docker-compose`` 1.29 and, where it is installed, ``docker compose``.

The image is the session's build (``ARTING_IMAGE``, ``--no-build``): a compose build
cannot pass a CA bundle to pip on a machine behind a TLS-intercepting proxy.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image

from docker_harness import ROOT, Docker, wait_http

#: The first of them builds the image (and, where none is cached, its base): minutes.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]


class Compose:
    """One compose project from the repository's compose.yaml, with its own .env file."""

    def __init__(self, command: list[str], docker: Docker, env_file: Path,
                 override: Path) -> None:
        self.docker = docker
        self.project = docker.name("project")
        self.command = [*command, "--project-name", self.project, "--env-file", str(env_file),
                        "--file", str(ROOT / "compose.yaml"), "--file", str(override)]
        # The user's own settings must not leak in: only the .env file speaks.
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("ARTING_", "API_"))}

    def __call__(self, *args: str, timeout: float = 120) -> str:
        proc = subprocess.run([*self.command, *args], capture_output=True, text=True,
                              env=self.env, cwd=ROOT, timeout=timeout)
        assert proc.returncode == 0, f"compose {' '.join(args)}: {proc.stderr[-3000:]}"
        return proc.stdout + proc.stderr

    def container(self) -> str:
        return self("ps", "-q", "arting").split()[-1]


def compose_command(kind: str, docker: Docker) -> list[str]:
    if kind == "docker-compose":
        candidates = [[shutil.which("docker-compose") or "docker-compose"]]
    else:
        candidates = [[cli, "compose"] for cli in dict.fromkeys((docker.cli, "docker"))]
    for command in candidates:
        try:
            if subprocess.run([*command, "version"], capture_output=True,
                              timeout=30).returncode == 0:
                return command
        except FileNotFoundError:
            pass
    pytest.skip(f"`{kind}` is not installed here")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(params=["docker-compose", "docker compose"])
def compose(request, docker: Docker, image: str, tmp_path: Path):
    command = compose_command(request.param, docker)
    token = str(uuid.uuid4())
    filled = {"ARTING_SANDBOX": "true", "ARTING_AUTH_TOKEN": token,
              "ARTING_PUBLISHED_PORT": str(free_port())}
    lines = [f"{line.split('=')[0]}={filled[line.split('=')[0]]}"
             if line.split("=")[0] in filled else line
             for line in (ROOT / ".env.example").read_text().splitlines()]
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join([*lines, f"ARTING_IMAGE={image}", ""]))
    override = tmp_path / "fast-health-check.yaml"
    override.write_text("services:\n  arting:\n    healthcheck:\n      interval: 1s\n")
    project = Compose(command, docker, env_file, override)
    try:
        yield project, token, filled["ARTING_PUBLISHED_PORT"]
    finally:
        project("down", "--volumes", "--remove-orphans", "--timeout", "5")


def test_compose_up_serves_on_loopback_and_down_keeps_the_volume(compose, docker):
    project, token, port = compose
    project("up", "--detach", "--no-build")
    container = project.container()
    docker.wait_healthy(container)
    info = docker.inspect(container)
    assert info["HostConfig"]["PortBindings"]["8090/tcp"] == [{"HostIp": "127.0.0.1",
                                                               "HostPort": port}]
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    assert [m["Name"] for m in info["Mounts"] if m["Destination"] == "/data"] == \
        [f"{project.project}_data"]

    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz")
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    made = client.images.generate(prompt="a lighthouse", size="768x512", response_format="url")
    png = httpx.get(made.data[0].url).content
    assert Image.open(io.BytesIO(png)).size == (768, 512)

    started = time.monotonic()
    project("stop")
    took = time.monotonic() - started
    assert docker.inspect(container)["State"]["ExitCode"] == 0
    assert took < 10, f"compose stop took {took:.1f} s"
    project("down")                        # the named volume stays
    project("up", "--detach", "--no-build")
    assert project.container() != container
    docker.wait_healthy(project.container())
    wait_http(url + "/healthz")
    assert httpx.get(made.data[0].url).content == png
    assert token not in project("logs", "--no-color")

    project("down", "--volumes")
    assert docker("volume", "inspect", f"{project.project}_data", check=False).returncode != 0
