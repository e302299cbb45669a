"""Schemathesis against a live daemon (sandbox), from the daemon's own OpenAPI document.

The document is the one the daemon serves at ``/openapi.json`` (built here at collection
time, so each operation is a test of its own; ``test_openapi.py`` checks that the live
daemon serves the same). Every operation is called with requests generated from its declared parameters and
bodies (and the schema's examples), with the admin key (so admin routes run too), and
each answer is checked the way Schemathesis checks an API: no 5xx, a declared status, a
declared content type, a body that matches its declared schema. The emulator answers at
once (``generation_time`` 0), so generation routes finish within the request.

The budget: ``EXAMPLES`` generated requests per operation (Hypothesis, derandomized so
every run sends the same ones), the schema's examples besides; about 60 operations.
"""

from __future__ import annotations

import pytest
import schemathesis
from arting_daemon.app import create_app
from arting_daemon.config import Settings
from arting_daemon.openapi import document
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               response_schema_conformance,
                                               status_code_conformance)

ADMIN = "schemathesis-admin-key-0123456789"
#: Generated requests per operation: enough to reach each route's branches (valid and
#: refused bodies, unknown ids), few enough to keep the whole run under a minute.
EXAMPLES = 80
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


schema = schemathesis.openapi.from_dict(document(create_app(Settings())))


@pytest.fixture(scope="module")
def live(make_module_daemon):
    return make_module_daemon(api_keys=[ADMIN], sandbox_options={"generation_time": 0})


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case, live):
    case.call_and_validate(base_url=live.url, headers={"Authorization": f"Bearer {ADMIN}"},
                           checks=CHECKS, timeout=30)
