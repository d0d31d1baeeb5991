"""Property-based API fuzzing (schemathesis) of each service's shipped OpenAPI document against the real
running service: whatever the input, no 5xx, and answers match the documented statuses, headers and schemas.

Not checked: that every schema-valid request is accepted. Some rules cannot be said in JSON Schema (an
IANA zone name, team members that exist), so a schema-valid request may rightly get a 422.
"""

import os
import uuid
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import Stack, token

pytestmark = pytest.mark.e2e
DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi"
schedule = schemathesis.openapi.from_path(DOCS / "schedule.json")
notifier = schemathesis.openapi.from_path(DOCS / "notifier.json")
ADMIN = token(uuid.uuid4(), "admin")
EXCLUDED = [positive_data_acceptance]
# FUZZ_EXAMPLES=500 make test digs deeper than CI's default
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "25")), deadline=None, suppress_health_check=list(HealthCheck))


@schedule.parametrize()
@FUZZ
def test_schedule_api(case: schemathesis.Case, stack: Stack) -> None:
    case.call_and_validate(base_url=stack.services["schedule"].base_url, headers=ADMIN, excluded_checks=EXCLUDED)


@notifier.parametrize()
@FUZZ
def test_notifier_api(case: schemathesis.Case, stack: Stack) -> None:
    case.call_and_validate(base_url=stack.services["notifier"].base_url, headers=ADMIN, excluded_checks=EXCLUDED)
