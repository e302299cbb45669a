"""Optional: AUTOMATIC1111's own API tests — the ``test/`` folder of the WebUI's
repository — run against this daemon (with its emulator), as they run against a WebUI.

Runs when ``A1111_REPO`` points at a checkout of AUTOMATIC1111/stable-diffusion-webui
(v1.10); the files are used as they are, only ``base_url`` is given by a plugin here
(``a1111_suite_plugin.py``) instead of pytest-base-url. The API files only: the others
(face restorers, torch utilities) import the WebUI itself. The same requests are in
``tests/test_sdapi_a1111_suite.py``, which needs no checkout.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

A1111_REPO = os.environ.get("A1111_REPO", "")
API_TESTS = ("test_txt2img.py", "test_img2img.py", "test_extras.py", "test_utils.py")
pytestmark = pytest.mark.skipif(not A1111_REPO, reason="set A1111_REPO to a checkout of "
                                                       "stable-diffusion-webui v1.10")


def test_the_webuis_own_api_tests_pass_against_the_daemon(daemon):
    tests = Path(A1111_REPO) / "test"
    assert all((tests / name).is_file() for name in API_TESTS), f"no API tests in {tests}"
    env = {**os.environ, "ARTING_A1111_BASE_URL": daemon.url,
           "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "a1111_suite_plugin", "-p", "no:cacheprovider",
         "-o", "addopts=", "-q", *(f"test/{name}" for name in API_TESTS)],
        cwd=A1111_REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert re.search(r"^29 passed", done.stdout, re.M), done.stdout[-500:]
