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
# CI draws 25 cases per operation; FUZZ_EXAMPLES=1500 digs deeper (see README, Tests)
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


def call(case: schemathesis.Case, base_url: str) -> None:
    """Send `case` as an admin and validate the answer, keeping schemathesis' negative cases honest.

    Two things would otherwise make a correct answer look wrong: a generated query parameter whose value is an
    empty list is not sent at all (so the "extra parameter" the case claims never reaches us), and our admin
    token would undo a mutation that removed the Authorization header. Empty lists are sent as empty values,
    and a case that drops Authorization is sent without it, so each request says exactly what the case claims.
    """
    if case.query:
        case.query = {k: ("" if v == [] else v) for k, v in case.query.items()}
    phase = getattr(case.meta, "phase", None) if case.meta else None
    mutations = getattr(getattr(phase, "data", None), "mutations", ()) or ()
    drops_auth = any(getattr(m, "parameter", None) == "Authorization" for m in mutations)
    case.call_and_validate(base_url=base_url, headers=None if drops_auth else ADMIN, excluded_checks=EXCLUDED)


@schedule.parametrize()
@FUZZ
def test_schedule_api(case: schemathesis.Case, stack: Stack) -> None:
    call(case, stack.services["schedule"].base_url)


@notifier.parametrize()
@FUZZ
def test_notifier_api(case: schemathesis.Case, stack: Stack) -> None:
    call(case, stack.services["notifier"].base_url)
