"""A pytest plugin for running AUTOMATIC1111's own API tests (the ``test/`` folder of
the WebUI's repository) against this daemon: they take the server from a ``base_url``
fixture, which the WebUI gets from pytest-base-url; here it comes from
``ARTING_A1111_BASE_URL``. Loaded with ``-p a1111_suite_plugin`` by
``test_a1111_own_suite.py``."""

import os

import pytest


@pytest.fixture(scope="session")
def base_url() -> str:
    return os.environ["ARTING_A1111_BASE_URL"].rstrip("/")
