"""The suite's own hygiene: a test leaves nothing running behind it.

After each test (its fixtures torn down), every thread, child process, listening port
and Docker container that appeared during it must be gone; what is left fails the test
at teardown and is named. A fixture of a wider scope (module, session) may keep what it
started until its own teardown, and is held to the same rule then; what its processes
start (a browser's renderers, Docker's shims) is counted as its own.

On Linux the test process is its descendants' "subreaper": a process whose parent ended
(a daemon's helper, a browser's child) is handed to it rather than to init, so it is
still seen as a descendant. Things take a moment to stop on a loaded machine, so what
is left is looked at again for ``GRACE`` seconds before it counts. If a thread that is
not a daemon is still running when the session ends (the interpreter would wait for it
for ever), the run exits anyway, with its status, after naming the thread.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

#: Seconds what a test stopped may take to be gone (generous: a loaded machine).
GRACE = 15.0
#: What a test session makes in Docker is named with this (``docker_harness``), so that
#: the check finds what is left of it, and only of it, on a Docker shared with others.
DOCKER_PREFIX = f"arting-test-{secrets.token_hex(4)}"
LINUX = sys.platform.startswith("linux")
PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Thing:
    """Something running: what to call it, and what it belongs to: the keys of itself
    and of what started it (a thread's creators, a process's ancestors below pytest; a
    port's owner's)."""

    name: str
    owners: frozenset = field(default=frozenset())


Things = dict[tuple, Thing]


# --- what is running --------------------------------------------------------------------

#: Which thread started each thread (a pool's workers belong to whoever uses the pool).
_creators: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_start = threading.Thread.start


def _start_noting_creator(thread: threading.Thread) -> None:
    _creators[thread] = threading.current_thread()
    _start(thread)


def threads() -> Things:
    found: Things = {}
    for thread in threading.enumerate():
        if thread is threading.main_thread() or not thread.is_alive() \
                or isinstance(thread, threading._DummyThread):
            continue
        owners, creator = {("thread", thread.ident)}, _creators.get(thread)
        while creator is not None and creator is not threading.main_thread():
            owners.add(("thread", creator.ident))
            creator = _creators.get(creator)
        found[("thread", thread.ident)] = Thing(
            f"thread {thread.name!r}" + ("" if thread.daemon else " (not a daemon)"),
            frozenset(owners))
    return found


def _stat(pid: str) -> tuple[int, str, str] | None:
    """A process's parent, state and start time (None when it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), fields[0], fields[19]


def _command(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    command = " ".join(a.decode(errors="replace") for a in argv if a)
    return command if len(command) <= 120 else command[:117] + "..."


def processes() -> tuple[Things, dict[int, tuple]]:
    """Every live (not zombie) descendant of this process, and each pid's key."""
    children: dict[int, list[tuple[int, str, str]]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (stat := _stat(entry.name)) is not None:
            children.setdefault(stat[0], []).append((int(entry.name), stat[1], stat[2]))
    found: Things = {}
    keys: dict[int, tuple] = {}
    todo = [(os.getpid(), frozenset())]
    while todo:
        parent, ancestors = todo.pop()
        for pid, state, started in children.get(parent, []):
            key = ("process", pid, started)
            if state != "Z":
                found[key] = Thing(f"process {pid} `{_command(pid)}`", ancestors | {key})
                keys[pid] = key
            todo.append((pid, ancestors | {key}))
    return found, keys


def _sockets(pid: int) -> Iterator[str]:
    try:
        fds = list(os.scandir(f"/proc/{pid}/fd"))
    except OSError:
        return
    for fd in fds:
        try:
            target = os.readlink(fd.path)
        except OSError:
            continue
        if target.startswith("socket:["):
            yield target[8:-1]


def listening() -> dict[str, str]:
    """Inode -> address of every listening TCP socket here, from the kernel's socket
    diagnostics (NETLINK_SOCK_DIAG asked for listening sockets only: quick however many
    thousands of others a busy machine has; /proc/net/tcp lists them all)."""
    found = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4) as diag:
        for family in (socket.AF_INET, socket.AF_INET6):
            # inet_diag_req_v2: family, protocol, extensions, states (1 << TCP_LISTEN)
            request = struct.pack("=BBBxI48x", family, socket.IPPROTO_TCP, 0, 1 << 10)
            # nlmsghdr: length, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP
            diag.send(struct.pack("=IHHII", 16 + len(request), 20, 0x301, 0, 0) + request)
            done = False
            while not done:
                data, offset = diag.recv(65536), 0
                while offset < len(data):
                    length, kind = struct.unpack_from("=IH", data, offset)
                    if kind in (2, 3):      # NLMSG_ERROR, NLMSG_DONE
                        done = True
                        break
                    msg = offset + 16       # inet_diag_msg: its id, then the inode at 68
                    port = struct.unpack_from(">H", data, msg + 4)[0]
                    ip = ipaddress.ip_address(data[msg + 8:msg + (12 if family ==
                                                                  socket.AF_INET else 24)])
                    inode = struct.unpack_from("=I", data, msg + 68)[0]
                    found[str(inode)] = f"{ip}:{port}" if ip.version == 4 else f"[{ip}]:{port}"
                    offset += (length + 3) & ~3
    return found


def ports(keys: dict[int, tuple]) -> Things:
    """The TCP ports this process or one of its descendants listens on."""
    owners: dict[str, list[int]] = {}
    for pid in (os.getpid(), *keys):
        for inode in _sockets(pid):
            owners.setdefault(inode, []).append(pid)
    found: Things = {}
    for inode, address in listening().items():
        if inode in owners:
            pids = owners[inode]
            who = ", ".join("this process" if pid == os.getpid()
                            else f"process {pid} `{_command(pid)}`" for pid in pids)
            found[("port", inode)] = Thing(f"listening port {address} ({who})",
                                           frozenset(keys[pid] for pid in pids if pid in keys))
    return found


def containers() -> Things:
    """Containers, volumes and networks named for this session (Docker is asked only
    when a test used it)."""
    cli = shutil.which("docker") or "/usr/bin/docker"
    found: Things = {}
    for kind, command, name in (("container", ["ps", "-a"], "{{.Names}}"),
                                ("volume", ["volume", "ls"], "{{.Name}}"),
                                ("network", ["network", "ls"], "{{.Name}}")):
        try:
            listed = subprocess.run([cli, *command, "--filter", f"name={DOCKER_PREFIX}",
                                     "--format", name], capture_output=True, text=True,
                                    timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return found
        for made in listed.stdout.split():
            found[(kind, made)] = Thing(f"Docker {kind} {made}")
    return found


def running(docker: bool = False) -> Things:
    found = threads()
    if LINUX:
        procs, keys = processes()
        found |= procs | ports(keys)
    if docker:
        found |= containers()
    return found


# --- the checks -------------------------------------------------------------------------

class Hygiene:
    """What ran before the test now running, and what the fixtures of each wider scope
    (a module, a class, the session) started, checked when that scope ends."""

    def __init__(self) -> None:
        self.before: Things | None = None
        self.held: dict[pytest.Node, Things] = {}

    def holds(self, key: tuple, thing: Thing) -> bool:
        return any(key in held or thing.owners & held.keys()
                   for held in self.held.values())

    def hold(self, node: pytest.Node, fixture: str, things: Things) -> None:
        if node not in self.held:
            # Registered before the first of the scope's fixtures' own teardowns, so run
            # after the last of them.
            self.held[node] = {}
            node.addfinalizer(lambda: self.release(node))
        self.held[node] |= {k: Thing(f"{t.name} (from the fixture {fixture!r})", t.owners)
                            for k, t in things.items()}

    def release(self, node: pytest.Node) -> None:
        held = self.held.pop(node)
        left, _ = self.wait(lambda now: {k: held[k] for k in now.keys() & held.keys()})
        if left:
            pytest.fail(f"the fixtures of {node.nodeid or 'the session'} left behind: "
                        f"{describe(left)}", pytrace=False)

    def wait(self, leftovers, docker: bool = False) -> tuple[Things, Things]:
        """``leftovers(what runs now)`` once it is empty or ``GRACE`` has passed, and
        what runs then."""
        deadline = time.monotonic() + GRACE
        while (left := leftovers(now := running(docker))) and time.monotonic() < deadline:
            time.sleep(0.05)
        return left, now


KEY = pytest.StashKey[Hygiene]()
EXIT = pytest.StashKey[int]()


def describe(left: Things) -> str:
    return "; ".join(sorted(t.name for t in left.values()))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    hygiene: Hygiene = item.config.stash[KEY]
    if hygiene.before is None:      # the first test; then what ran after the last one
        hygiene.before = running(uses_docker(item))
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request) -> Iterator[object]:
    """What a wider-scoped fixture's setup starts is held until its scope ends."""
    if fixturedef.scope == "function":
        return (yield)
    hygiene: Hygiene = request.config.stash[KEY]
    before = running()
    try:
        return (yield)
    finally:
        hygiene.hold(request.node, fixturedef.argname,
                     {k: t for k, t in running().items() if k not in before})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem) -> Iterator[None]:
    hygiene: Hygiene = item.config.stash[KEY]
    try:
        return (yield)
    finally:
        before = hygiene.before or {}
        left, hygiene.before = hygiene.wait(
            lambda now: {k: t for k, t in now.items()
                         if k not in before and not hygiene.holds(k, t)},
            uses_docker(item))
        if left:
            pytest.fail(f"{item.nodeid} left behind: {describe(left)}", pytrace=False)


def uses_docker(node) -> bool:
    return "docker" in getattr(node, "fixturenames", ())


# --- the session ------------------------------------------------------------------------

_outermost: list = []       # the session this process runs (not one a test runs inside it)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[KEY] = Hygiene()
    if not _outermost:
        _outermost.append(config)
        threading.Thread.start = _start_noting_creator
        if LINUX:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[EXIT] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """A thread that is not a daemon would keep the interpreter from ever exiting: name
    it and exit anyway, failed."""
    if _outermost != [config]:
        return
    threading.Thread.start = _start
    stuck = [t for t in threading.enumerate() if not t.daemon and t.is_alive()
             and t is not threading.main_thread()
             and not isinstance(t, threading._DummyThread)]
    if stuck:
        names = ", ".join(repr(t.name) for t in stuck)
        print(f"\nhygiene: threads still running at the end, exiting without them: {names}",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(config.stash.get(EXIT, 1) or 1)

