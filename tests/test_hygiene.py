"""The suite's hygiene check (``hygiene.py``) and timeout, proven on small pytest runs of
their own, each in a subprocess: what a test leaves running is named and fails it; a run
whose test hangs, or leaves a thread that is not a daemon, still ends; and a real test
that fails half-way (the rolling restart of ``test_replicas``, with a replica that does
not start) fails alone and leaves nothing behind."""

from __future__ import annotations

import os
import re
import shutil
import signal
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

LEAKS = """
import os, socket, subprocess, sys, threading, time

import pytest

SLEEPER = [sys.executable, "-c", "import time; time.sleep(3600)"]
PORTS = []


def note(pid):
    with open(os.environ["LEAKED_PIDS"], "a") as f:
        f.write(f"{pid}\\n")


def test_leaves_a_thread():
    threading.Thread(target=time.sleep, args=(3600,), name="forgotten", daemon=True).start()


def test_leaves_a_process():
    note(subprocess.Popen(SLEEPER, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)


def test_leaves_a_process_whose_parent_has_ended():
    spawn = ("import subprocess; print(subprocess.Popen(%r, stdout=subprocess.DEVNULL, "
             "stderr=subprocess.DEVNULL).pid)" % SLEEPER)
    note(int(subprocess.run([sys.executable, "-c", spawn], capture_output=True, text=True,
                            check=True).stdout))


def test_leaves_a_listening_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    PORTS.append(sock)
    print(f"PORT={sock.getsockname()[1]}")


def test_cleans_up_after_itself():
    proc = subprocess.Popen(SLEEPER)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    try:
        assert False, "injected failure"
    finally:
        proc.kill()
        proc.wait()
        stop.set()
        thread.join()


@pytest.fixture(scope="module")
def shared():
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="shared by the module", daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


@pytest.fixture(scope="module")
def careless():
    threading.Thread(target=time.sleep, args=(3600,), name="kept by the module",
                     daemon=True).start()
    yield


def test_one_uses_what_the_module_holds(shared, careless):
    pass


def test_another_uses_it_too(shared, careless):
    pass


"""


@pytest.fixture
def run(pytester, monkeypatch, tmp_path):
    """Run pytest with the hygiene plugin on ``source`` (a test file), in a subprocess."""
    leaked = tmp_path / "leaked-pids"
    leaked.touch()
    monkeypatch.setenv("PYTHONPATH", f"{TESTS}{os.pathsep}{tmp_path}")
    monkeypatch.setenv("LEAKED_PIDS", str(leaked))

    def run(source: str, *args: str):
        pytester.makepyfile(test_injected=textwrap.dedent(source))
        return pytester.runpytest_subprocess("-p", "hygiene", "-p", "no:cacheprovider",
                                             *args, timeout=240)
    try:
        yield run
    finally:   # what the runs were meant to leave behind, ended (it would fail this test)
        for pid in map(int, leaked.read_text().split()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def at_teardown(out: str) -> dict[str, str]:
    """The errors at teardown in pytest's output, by test."""
    parts = re.split(r"_+ ERROR at teardown of (\w+) _+", out)
    return dict(zip(parts[1::2], parts[2::2]))


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_what_a_test_leaves_running_is_named_and_fails_it(run, tmp_path):
    result = run(LEAKS)
    out = result.stdout.str()
    result.assert_outcomes(passed=6, failed=1, errors=5)
    errors = at_teardown(out)
    assert set(errors) == {"test_leaves_a_thread", "test_leaves_a_process",
                           "test_leaves_a_process_whose_parent_has_ended",
                           "test_leaves_a_listening_port", "test_another_uses_it_too"}, out
    assert "thread 'forgotten'" in errors["test_leaves_a_thread"]
    leaked = (tmp_path / "leaked-pids").read_text().split()
    assert f"process {leaked[0]} `" in errors["test_leaves_a_process"]
    assert f"process {leaked[1]} `" in errors["test_leaves_a_process_whose_parent_has_ended"]
    port = re.search(r"PORT=(\d+)", out)[1]
    assert f"listening port 127.0.0.1:{port} (this process)" in \
        errors["test_leaves_a_listening_port"]
    # The module's fixtures hold their threads until the module ends; then the one that
    # did not stop its thread is named, at the last test's teardown.
    assert "the fixtures of test_injected.py left behind: thread 'kept by the module' " \
           "(from the fixture 'careless')" in errors["test_another_uses_it_too"]
    assert "shared by the module" not in out
    # The test that failed half-way left nothing: its failure is its only report.
    assert "test_cleans_up_after_itself" not in errors
    assert "AssertionError: injected failure" in out


def test_a_thread_that_is_not_a_daemon_does_not_keep_the_run_from_ending(run):
    result = run("""
        import threading, time

        def test_starts_a_thread_that_never_ends():
            threading.Thread(target=time.sleep, args=(3600,), name="stuck").start()
        """)
    result.assert_outcomes(passed=1, errors=1)
    assert "thread 'stuck' (not a daemon)" in result.stdout.str()
    assert "threads still running at the end, exiting without them: 'stuck'" in \
        result.stderr.str()
    assert result.ret == 1


def test_a_hung_test_fails_with_its_stack_and_the_run_goes_on(run):
    result = run("""
        import threading

        def test_waits_for_ever():
            threading.Event().wait()

        def test_runs_after_it():
            pass
        """, "-o", "timeout=5")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "Failed: Timeout (>5.0s) from pytest-timeout" in out
    assert "threading.Event().wait()" in out      # where it hung


@pytest.mark.skipif(shutil.which("redis-server") is None,
                    reason="needs redis-server (Debian's redis-server; .ci/run installs it)")
def test_the_rolling_restart_failing_half_way_leaves_nothing_behind(run, tmp_path):
    """The issue this check was made for: a replica of the rolling restart does not
    start, while four threads load the others."""
    (tmp_path / "inject.py").write_text(textwrap.dedent("""
        import processes

        started = 0
        real = processes.DaemonProcess.__init__

        def fifth_does_not_start(self, *args, **kwargs):
            global started
            started += 1
            if started == 5:
                raise AssertionError("injected: the second new replica did not start")
            real(self, *args, **kwargs)

        processes.DaemonProcess.__init__ = fifth_does_not_start
        """))
    test = TESTS / "test_replicas.py"
    result = run("", "-p", "inject", "-rA",
                 f"{test}::test_a_rolling_restart_under_load_loses_no_request_and_no_job")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "injected: the second new replica did not start" in out
    assert "left behind" not in out
