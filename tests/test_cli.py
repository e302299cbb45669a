"""The ``arting-daemon`` command as users run it: ``--help``, ``--sandbox``, a busy port."""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image
from processes import START_TIMEOUT, first_line

COMMAND = Path(sys.executable).with_name("arting-daemon")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARTING_", "API_"))}
    env["HOME"] = str(tmp_path)  # the default data directory must not be the user's
    return env


def test_help_explains_every_option():
    out = subprocess.run([str(COMMAND), "--help"], capture_output=True, text=True,
                         timeout=30).stdout
    for flag, words in [("--host", "address"), ("--port", "TCP port"), ("--config", "TOML"),
                        ("--sandbox", "emulator"), ("--data-dir", "images")]:
        assert flag in out and words in out


@pytest.mark.parametrize("event_loop, runs_on", [(None, "uvloop"), ("asyncio", "asyncio")])
def test_sandbox_mode_needs_no_account_and_no_network(tmp_path, event_loop, runs_on):
    """On uvloop's event loop (the default where it is installed, as here) and on
    asyncio's own."""
    env = clean_env(tmp_path)
    if event_loop:
        env["ARTING_EVENT_LOOP"] = event_loop
    proc = subprocess.Popen([str(COMMAND), "--sandbox", "--port", "0",
                             "--data-dir", str(tmp_path / "data")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)
    try:
        line = first_line(proc, START_TIMEOUT)
        assert "listening on http://127.0.0.1:" in line and "sandbox" in line, line
        url = line.split("listening on ", 1)[1].split()[0]
        assert httpx.get(url + "/healthz").json()["sandbox"] is True
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        made = client.images.generate(prompt="a lighthouse", size="512x512",
                                      response_format="b64_json")
        png = base64.b64decode(made.data[0].b64_json)
        assert Image.open(io.BytesIO(png)).size == (512, 512)
        edited = client.images.edit(image=("in.png", png, "image/png"), prompt="at night",
                                    response_format="b64_json")   # img2img is on here
        assert edited.data[0].b64_json
        status = httpx.get(url + "/arting/v1/status").json()
        assert status["sandbox"] is True and status["upstream"].startswith("http://127.0.0.1:")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert f"running on {runs_on}'s event loop" in err, err


@pytest.mark.parametrize("stream", ["stderr", "stdout"])
def test_the_log_goes_where_log_stream_says(tmp_path, stream):
    env = {**clean_env(tmp_path), "ARTING_LOG_STREAM": stream}
    proc = subprocess.Popen([str(COMMAND), "--sandbox", "--port", "0",
                             "--data-dir", str(tmp_path / "data")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)
    read: list[str] = []
    try:
        while not read or "listening on" not in read[-1]:   # the log may come first
            read.append(proc.stdout.readline())
            assert read[-1], "the daemon ended before it listened"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    out = "".join(read) + out
    logged, other = (out, err) if stream == "stdout" else (err, out)
    assert "sandbox: Arting emulator" in logged and "INFO" in logged, (out, err)
    assert "INFO" not in other, other


def test_a_busy_port_is_one_clear_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([str(COMMAND), "--port", str(port), "--data-dir",
                               str(tmp_path / "data")], capture_output=True, text=True,
                              env=clean_env(tmp_path), timeout=30)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr


def test_an_unusable_data_directory_is_named(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = subprocess.run([str(COMMAND), "--port", "0", "--data-dir", str(blocker / "data")],
                          capture_output=True, text=True, env=clean_env(tmp_path), timeout=30)
    assert done.returncode == 1
    assert "data_dir" in done.stderr and "a-file" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
