"""``compose.yaml`` brought up and down as a user does, with ``.env.example`` filled in:
Debian's ``docker-compose`` 1.29 and, where it is installed, ``docker compose``; and
``compose.replicas.yaml`` (three replicas, Redis, nginx) driven through its load balancer
while replicas are killed and rolled.

The image is the session's build (``ARTING_IMAGE``, ``--no-build``): a compose build
cannot pass a CA bundle to pip on a machine behind a TLS-intercepting proxy. Redis and
nginx are stand-ins built from Debian's packages on the same base
(``standins.Dockerfile``), as no registry may be reachable.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image

from docker_harness import ROOT, Docker, wait_http

HERE = Path(__file__).resolve().parent

#: The first of them builds the image (and, where none is cached, its base): minutes.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]


class Compose:
    """One compose project from the repository's compose.yaml, with its own .env file."""

    def __init__(self, command: list[str], docker: Docker, env_file: Path,
                 override: Path, file: str = "compose.yaml") -> None:
        self.docker = docker
        self.project = docker.name("project")
        self.options = ["--project-name", self.project, "--env-file", str(env_file),
                        "--file", str(ROOT / file), "--file", str(override)]
        self.tool = command
        self.command = [*command, *self.options]
        # The user's own settings must not leak in: only the .env file speaks.
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("ARTING_", "API_"))}

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        proc = subprocess.run([*self.command, *args], capture_output=True, text=True,
                              env=self.env, cwd=ROOT, timeout=timeout)
        assert proc.returncode == 0 or not check, \
            f"compose {' '.join(args)}: {proc.stderr[-3000:]}"
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


# --- compose.replicas.yaml ------------------------------------------------------------------

ADMIN = "replicas-admin-key-0123456789"
GENERATION_TIME = 3     # the shared emulator's, seconds per job
TERMINAL = ("succeeded", "failed", "cancelled")

#: What the test adds to compose.replicas.yaml: one Arting emulator all replicas share (a
#: job taken over is followed at the upstream that has it), short leases and polls.
REPLICAS_OVERRIDE = f"""
services:
  sandbox:
    image: ${{ARTING_IMAGE}}
    entrypoint: ["python", "-m", "arting_daemon.sandbox", "--host", "0.0.0.0",
                 "--port", "9000", "--generation-time", "{GENERATION_TIME}",
                 "--public-url", "http://sandbox:9000"]
    read_only: true
    healthcheck:
      disable: true
  arting:
    depends_on:
      sandbox:
        condition: service_started
    environment:
      ARTING_BASE_URL: http://sandbox:9000
      ARTING_REPLICA_LEASE: "3"
      ARTING_EXPECTED_DURATION: "0.5"
      ARTING_POLL_MIN_INTERVAL: "0.2"
      ARTING_POLL_MAX_INTERVAL: "0.5"
      ARTING_LOG_LEVEL: info
"""


@pytest.fixture(scope="module")
def standins(docker: Docker, base: str) -> dict[str, str]:
    """Redis and nginx images from Debian's packages, tagged for the session."""
    tags = {}
    for target in ("redis", "nginx"):
        tags[target] = docker.name("tag")
        docker("build", "--build-arg", f"BASE={base}", "--target", target, "--file",
               str(HERE / "standins.Dockerfile"), "--tag", tags[target], str(HERE),
               timeout=900)
    return tags


@pytest.fixture
def replica_set(docker: Docker, image: str, standins: dict[str, str], tmp_path: Path):
    command = compose_command("docker-compose", docker)
    port = str(free_port())
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join([
        f"API_MASTER_KEY={ADMIN}", f"ARTING_AUTH_TOKEN={uuid.uuid4()}",
        f"ARTING_IMAGE={image}", f"ARTING_REDIS_IMAGE={standins['redis']}",
        f"ARTING_LB_IMAGE={standins['nginx']}", f"ARTING_PUBLISHED_PORT={port}", ""]))
    override = tmp_path / "shared-emulator.yaml"
    override.write_text(REPLICAS_OVERRIDE)
    project = Compose(command, docker, env_file, override, file="compose.replicas.yaml")
    try:
        project("up", "--detach", "--no-build", "--scale", "arting=3", timeout=300)
        yield project, f"http://127.0.0.1:{port}"
    finally:
        project("down", "--volumes", "--remove-orphans", "--timeout", "5", check=False)


class Traffic:
    """Clients through the load balancer until stopped: each submits a job and polls it
    to its end (the plugins' way), or waits for an OpenAI generation; every request's
    outcome and how long it took are kept."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.requests: list[tuple[str, int, float]] = []     # (what, status, seconds)
        self.codes: list[str] = []          # the error codes of the answers not 2xx
        self.jobs: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True)
                         for i in range(clients)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)
        assert not any(t.is_alive() for t in self._threads), "a client hangs"

    def _call(self, http: httpx.Client, what: str, method: str, path: str,
              **kw) -> httpx.Response | None:
        started = time.monotonic()
        try:
            resp = http.request(method, self.url + path, **kw)
            status = resp.status_code
            if not resp.is_success:
                self.codes.append(resp.json()["error"]["code"])
        except httpx.TransportError as exc:
            resp, status = None, 0
            what = f"{what} ({type(exc).__name__})"
        self.requests.append((what, status, time.monotonic() - started))
        return resp

    def _client(self, number: int) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {ADMIN}"}, timeout=120) as http:
            turn = 0
            while not self._stop.is_set():
                turn += 1
                if number == 0 and turn % 2 == 0:
                    self._call(http, "generate", "POST", "/v1/images/generations",
                               json={"prompt": f"sync {turn}", "response_format": "url"})
                    continue
                made = self._call(http, "submit", "POST", "/arting/v1/jobs",
                                  json={"prompt": f"client {number} job {turn}"})
                if made is None or made.status_code != 202:
                    continue
                job_id = made.json()["id"]
                self.jobs.append(job_id)
                while True:
                    polled = self._call(http, "poll", "GET", f"/arting/v1/jobs/{job_id}")
                    if polled is None or polled.status_code != 200 or \
                            polled.json()["state"] in TERMINAL:
                        break
                    time.sleep(0.3)

    def failed(self) -> list[tuple[str, int, float]]:
        return [r for r in self.requests if not 200 <= r[1] < 300]


def job_states(url: str, ids: list[str], timeout: float = 60) -> dict[str, dict]:
    """Each job as it ends, waited for through the load balancer."""
    deadline = time.monotonic() + timeout
    ended: dict[str, dict] = {}
    with httpx.Client(headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30) as http:
        while len(ended) < len(ids):
            for job_id in set(ids) - set(ended):
                job = http.get(f"{url}/arting/v1/jobs/{job_id}").json()
                if job["state"] in TERMINAL:
                    ended[job_id] = job
            assert time.monotonic() < deadline, f"not ended: {set(ids) - set(ended)}"
            time.sleep(0.3)
    return ended


def test_replicas_behind_the_load_balancer_find_every_job_survive_a_kill_and_roll(
        replica_set, docker: Docker, image: str):
    project, url = replica_set
    for service in ("redis", "arting", "lb"):
        for container in project("ps", "-q", service).split():
            docker.wait_healthy(container, timeout=120)
    wait_http(url + "/readyz")
    http = httpx.Client(headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)
    try:
        # 1. Read-your-writes: each job read at once, wherever the read lands.
        for i in range(100):
            made = http.post(f"{url}/arting/v1/jobs", json={"prompt": f"pair {i}"},
                             headers={"Idempotency-Key": f"pair-{i}"})
            assert made.status_code == 202, made.text
            found = http.get(f"{url}/arting/v1/jobs/{made.json()['id']}")
            assert found.status_code == 200, (i, found.text)
            if i % 10 == 0:
                again = http.post(f"{url}/arting/v1/jobs", json={"prompt": f"pair {i}"},
                                  headers={"Idempotency-Key": f"pair-{i}"})
                assert (again.status_code, again.json()["id"]) == (200, made.json()["id"])

        # 2. A replica killed mid-traffic: requests wait a few seconds at most, and its
        # jobs finish elsewhere, each with its own images.
        mine = [http.post(f"{url}/arting/v1/jobs", json={
            "prompt": f"taken over {i}", "seed": 40 + i, "cache": False}).json()["id"]
            for i in range(6)]
        with Traffic(url) as traffic:
            time.sleep(2)
            victim = project("ps", "-q", "arting").split()[0]
            docker("kill", victim)
            time.sleep(8)
        slow = [r for r in traffic.requests if r[0] != "generate" and r[2] > 5]
        assert not slow, slow
        # A GET is sent on to another replica; only a POST in flight on the dead one is
        # answered 503 (its job goes on: the answer says how to get it).
        assert all(what in ("submit", "generate") and status == 503
                   for what, status, _ in traffic.failed()), traffic.failed()
        assert set(traffic.codes) <= {"replica_lost"}, traffic.codes
        ended = job_states(url, mine + traffic.jobs)
        assert all(job["state"] == "succeeded" for job in ended.values()), ended
        for i, job_id in enumerate(mine):
            again = http.post(f"{url}/arting/v1/jobs", json={
                "prompt": f"taken over {i}", "seed": 40 + i, "cache": False}).json()["id"]
            fresh = job_states(url, [again])[again]
            assert [im["hash"] for im in ended[job_id]["images"]] == \
                [im["hash"] for im in fresh["images"]]
        assert "took over job" in project("logs", "--no-color", "arting")
        docker("rm", victim)
        project("up", "--detach", "--no-build", "--no-recreate", "--scale", "arting=3",
                "arting", timeout=300)

        # 3. The rolling restart, as an upgrade to a new tag, under steady traffic.
        upgraded = docker.name("tag")
        docker("tag", image, upgraded)
        before = set(project("ps", "-q", "arting").split())
        with Traffic(url) as traffic:
            time.sleep(2)
            rolled = subprocess.run(
                [str(ROOT / "deploy" / "rolling-restart.sh"), *project.options],
                capture_output=True, text=True, timeout=900, cwd=ROOT,
                env={**project.env, "COMPOSE": " ".join(project.tool),
                     "DOCKER": docker.cli, "ARTING_IMAGE": upgraded})
            assert rolled.returncode == 0, rolled.stderr
            time.sleep(2)
        assert traffic.requests and not traffic.failed(), traffic.failed()
        after = project("ps", "-q", "arting").split()
        assert len(after) == 3 and not before & set(after)
        assert all(docker.inspect(c)["Config"]["Image"] == upgraded for c in after)
        ended = job_states(url, traffic.jobs)
        assert all(job["state"] == "succeeded" for job in ended.values()), ended
    finally:
        http.close()
