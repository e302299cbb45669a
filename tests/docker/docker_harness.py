"""Docker for the tests: a CLI that builds with BuildKit, a daemon, a base image, and a
record of everything a test made so that all of it is removed again.

Facts behind the choices (``shared/docker.md``): no registry may be reachable, so the
default base is used when it can be pulled and otherwise a Debian base is made with
debootstrap and kept under one tag between runs (making it takes a minute or two);
a ``docker`` CLI without buildx cannot run BuildKit builds, Debian's 20.10 CLI can;
``dockerd`` runs here with no flags when started as root.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from hygiene import DOCKER_PREFIX

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BASE = "python:3.12-slim"
LOCAL_BASE = "local/python:3.11-bookworm"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
HOST_EXTRA_CAS = Path("/usr/local/share/ca-certificates")


class Unavailable(Exception):
    """Docker cannot run here; the message says why (the tests skip with it)."""


class Docker:
    """One docker CLI, and every container, volume, network and tag made through it."""

    def __init__(self, cli: str) -> None:
        self.cli = cli
        self.env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        self.prefix = DOCKER_PREFIX     # the hygiene check looks for what is left by it
        self._made: dict[str, list[str]] = {"container": [], "volume": [], "network": [],
                                             "tag": [], "project": []}
        self._numbers = itertools.count()

    def __call__(self, *args: str, timeout: float = 120,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.cli, *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({proc.returncode}): "
                                 f"{proc.stderr[-3000:]}")
        return proc

    def name(self, kind: str) -> str:
        """A fresh name for a ``container``, ``volume``, ``network``, ``tag`` or compose
        ``project``, removed by ``clean_up``."""
        number = next(self._numbers)
        name = f"{self.prefix}-{kind}{number}"
        if kind == "tag":
            name = f"arting-2api-test:{self.prefix.removeprefix('arting-test-')}-{number}"
        self._made[kind].append(name)
        return name

    def clean_up(self, tags: bool = True) -> None:
        """Remove what was made (image tags too, unless ``tags`` is false)."""
        projects, self._made["project"] = self._made["project"], []
        for project in projects:
            for kind, flag in (("container", "ps -aq"), ("volume", "volume ls -q"),
                               ("network", "network ls -q")):
                found = self(*flag.split(), "--filter",
                             f"label=com.docker.compose.project={project}", check=False)
                self._made[kind] += found.stdout.split()
        for kind, command in (("container", ("rm", "-f", "-v")), ("volume", ("volume", "rm")),
                              ("network", ("network", "rm")), ("tag", ("rmi",))):
            if kind == "tag" and not tags:
                continue
            for name in self._made[kind]:
                self(*command, name, check=False, timeout=60)
            self._made[kind].clear()

    # --- containers ------------------------------------------------------------------------

    def inspect(self, name: str) -> dict:
        return json.loads(self("inspect", name).stdout)[0]

    def published_url(self, container: str, port: int = 8090) -> str:
        address = self("port", container, f"{port}/tcp").stdout.split()[0]
        return f"http://{address}"

    def wait_healthy(self, container: str, timeout: float = 90) -> None:
        """Until Docker reports the image's health check as passing."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.inspect(container)["State"]
            if state.get("Health", {}).get("Status") == "healthy":
                return
            if not state["Running"]:
                raise AssertionError(f"{container} ended ({state['ExitCode']}): "
                                     f"{self.logs(container)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{container} not healthy: {state.get('Health')}")
            time.sleep(0.2)

    def logs(self, container: str) -> str:
        proc = self("logs", container)
        return proc.stdout + proc.stderr

    def image_files(self, image: str) -> Iterator[tuple[str, bytes]]:
        """Every regular file of an image's file system, with its content."""
        container = self.name("container")
        self("create", "--name", container, image)
        with tempfile.TemporaryFile() as tar:
            subprocess.run([self.cli, "export", container], stdout=tar, env=self.env,
                           check=True, timeout=300)
            tar.seek(0)
            with tarfile.open(fileobj=tar) as archive:
                for member in archive:
                    if member.isfile():
                        yield member.name, archive.extractfile(member).read()


# --- finding and starting Docker ------------------------------------------------------------

def find_cli() -> str:
    """A docker CLI that can build with BuildKit (``RUN --mount`` needs it)."""
    candidates = dict.fromkeys(p for p in (shutil.which("docker"), "/usr/bin/docker")
                               if p and Path(p).is_file())
    if not candidates:
        raise Unavailable("the docker CLI is not installed (apt-get install docker.io)")
    for cli in candidates:
        if subprocess.run([cli, "buildx", "version"], capture_output=True,
                          timeout=30).returncode == 0:
            return cli
        version = subprocess.run([cli, "version", "--format", "{{.Client.Version}}"],
                                 capture_output=True, text=True, timeout=30).stdout
        major = re.match(r"(\d+)\.", version)
        if major and int(major[1]) < 23:   # BuildKit still built into the CLI
            return cli
    raise Unavailable(f"no docker CLI here can build with BuildKit ({', '.join(candidates)}: "
                      "no buildx); install buildx or Debian's docker.io")


def daemon_answers(cli: str) -> bool:
    return subprocess.run([cli, "info"], capture_output=True, timeout=30).returncode == 0


def start_dockerd(cli: str, log: Path, timeout: float = 120) -> subprocess.Popen | None:
    """``dockerd`` as root with no flags, answering within ``timeout``, or ``Unavailable``;
    None when another one (a parallel test session's) came up meanwhile: not ours to stop."""
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not Path(dockerd).is_file():
        raise Unavailable("no Docker daemon is running and dockerd is not installed "
                          "(apt-get install docker.io)")
    if os.geteuid() != 0:
        raise Unavailable("no Docker daemon is running, and only root may start dockerd")
    with log.open("wb") as out:
        proc = subprocess.Popen([dockerd], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not daemon_answers(cli):
        if time.monotonic() > deadline:
            stop_process(proc)
            raise Unavailable("dockerd did not come up: "
                              + log.read_text(errors="replace")[-1500:])
        time.sleep(0.2)
    return proc if proc.poll() is None else None


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


# --- the base image ---------------------------------------------------------------------------

def base_image(docker: Docker) -> str:
    """The Dockerfile's default base if it is here or can be pulled, else a Debian base
    made with debootstrap (kept between runs under ``LOCAL_BASE``)."""
    for tag in (DEFAULT_BASE, LOCAL_BASE):
        if docker("image", "inspect", tag, check=False).returncode == 0:
            return tag
    try:
        if docker("pull", DEFAULT_BASE, check=False, timeout=300).returncode == 0:
            return DEFAULT_BASE
    except subprocess.TimeoutExpired:
        pass
    make_local_base(docker)
    return LOCAL_BASE


def debian_mirror() -> str:
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for line in "\n".join(p.read_text() for p in sources).splitlines():
        if line.startswith("URIs:") and "security" not in line:
            return line.split()[1]
    listed = Path("/etc/apt/sources.list")
    for line in (listed.read_text().splitlines() if listed.is_file() else []):
        if line.startswith("deb ") and "security" not in line:
            return line.split()[1]
    return "http://deb.debian.org/debian"


def make_local_base(docker: Docker) -> None:
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).is_file() or os.geteuid() != 0:
        raise Unavailable(f"{DEFAULT_BASE} cannot be pulled, and making a local base needs "
                          "root and debootstrap (apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="arting-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        made = subprocess.run(
            [debootstrap, "--variant=minbase",
             "--include=python3,python3-venv,python3-pip,ca-certificates",
             "bookworm", str(rootfs), debian_mirror()],
            capture_output=True, text=True, timeout=900)
        if made.returncode != 0:
            raise AssertionError(f"debootstrap failed: {made.stdout[-2000:]}{made.stderr}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run([docker.cli, "import", "--change", "ENV LANG=C.UTF-8", "-",
                                   LOCAL_BASE], stdin=tar.stdout, capture_output=True,
                                  text=True, env=docker.env, timeout=600)
        tar.stdout.close()
        tar.wait(60)
        if imported.returncode != 0:
            raise AssertionError(f"docker import failed: {imported.stderr}")


def build_image(docker: Docker, base: str) -> str:
    """Build the repository's Dockerfile; the host's CA bundle goes in as the build
    secret, as a user behind a TLS-intercepting proxy would pass it."""
    tag = docker.name("tag")
    secret = ["--secret", f"id=ca,src={HOST_CA_BUNDLE}"] if HOST_CA_BUNDLE.is_file() else []
    docker("build", "--build-arg", f"BASE={base}", *secret, "--tag", tag, str(ROOT),
           timeout=1200)
    return tag


#: Run by the image's Python: the bytes each installed distribution's files take on disk
#: (its RECORD, as trimmed by the build), and what each one requires.
SIZES = """
import importlib.metadata as md, json, os, re
def norm(name): return re.sub(r"[-_.]+", "-", name).lower()
found = {}
for dist in md.distributions():
    size = 0
    for f in dist.files or ():
        try:
            size += os.lstat(dist.locate_file(f)).st_size
        except OSError:
            pass
    needs = [norm(re.match(r"[A-Za-z0-9._-]+", r)[0]) for r in dist.requires or ()
             if "extra ==" not in r]
    found[norm(dist.metadata["Name"])] = {"bytes": size, "requires": needs}
print(json.dumps(found))
"""


def distributions(docker: Docker, image: str) -> dict[str, dict]:
    """What ``SIZES`` finds in ``image``: name -> bytes and requirements."""
    return json.loads(docker("run", "--rm", "--name", docker.name("container"),
                             "--entrypoint", "python", image, "-c", SIZES).stdout)


def cost_by_dependency(found: dict[str, dict], top: str = "arting-2api") -> list[tuple]:
    """Each of ``top``'s own requirements with the distributions it alone brings, and
    its bytes; then those that several bring, then ``top`` itself."""
    def closure(name: str) -> set[str]:
        seen, todo = set(), [name]
        while todo:
            if (n := todo.pop()) in found and n not in seen:
                seen.add(n)
                todo += found[n]["requires"]
        return seen

    direct = [n for n in found[top]["requires"] if n in found]
    brought = {n: closure(n) for n in direct}
    shared = {n for n in found for a in direct for b in direct
              if a != b and n in brought[a] & brought[b]}
    rows = [(n, sorted(brought[n] - shared - {n}),
             sum(found[m]["bytes"] for m in brought[n] - shared)) for n in direct]
    rows.sort(key=lambda row: -row[2])
    rows.append(("shared by several", sorted(shared), sum(found[m]["bytes"] for m in shared)))
    rows.append((top, [], found[top]["bytes"]))
    return rows


def elf_sections(data: bytes) -> set[str]:
    """The names of a 64-bit little-endian ELF file's sections (empty for anything else):
    a compiled module keeps its debugging symbols in the ``.debug_*`` ones."""
    if data[:4] != b"\x7fELF" or data[4:6] != b"\x02\x01":
        return set()
    (table,) = struct.unpack_from("<Q", data, 0x28)
    entry, count, names_index = struct.unpack_from("<HHH", data, 0x3A)

    def section(i: int) -> tuple[int, ...]:   # name, type, flags, address, offset, size
        return struct.unpack_from("<IIQQQQ", data, table + i * entry)

    *_, offset, size = section(names_index)
    names = data[offset:offset + size]
    return {names[n:names.index(b"\0", n)].decode() for n, *_ in map(section, range(count))}


def host_extra_cas() -> list[str]:
    """A line from the middle of each CA this machine trusts beyond Debian's (a proxy's):
    key material no other certificate has."""
    lines = []
    for path in sorted(HOST_EXTRA_CAS.rglob("*.crt")) if HOST_EXTRA_CAS.is_dir() else []:
        body = re.search(r"-----BEGIN CERTIFICATE-----(.*?)-----END", path.read_text(), re.S)
        if body and len(body[1].split()) > 2:
            lines.append(body[1].split()[len(body[1].split()) // 2])
    return lines


def wait_http(url: str, timeout: float = 30, **kwargs) -> httpx.Response:
    """GET until the server answers (a published port may take a moment to forward)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=10, **kwargs)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
