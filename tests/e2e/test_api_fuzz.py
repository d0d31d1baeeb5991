"""Property-based API fuzzing (schemathesis) of each service's shipped OpenAPI document against the real
running service, in three phases: the documented examples, the coverage phase (every boundary, every
enum value, each required field missing, each constraint broken once: deterministic, so a regression cannot
hide behind an unlucky draw) and random fuzzing. Every built-in check runs; whatever the input: no 5xx,
only documented statuses, headers, content types and schemas, schema-violating requests refused, missing
or bad credentials refused, and schema-valid requests accepted (positive_data_acceptance) except on the
operations listed in DOMAIN_RULES.

A service whose document has no operations yet (callrouter today) gets its test the day it has one.
"""

import json
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from shared.services import SERVICE_NAMES
from tests.conftest import Stack, token

pytestmark = pytest.mark.e2e
DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi"
PHASES = ["examples", "coverage", "fuzzing"]
ADMIN = token(uuid.uuid4(), "admin")
# CI draws 25 random cases per operation in the fuzzing phase (the coverage phase is not drawn: it is as
# large as the schema); FUZZ_EXAMPLES=1500 digs deeper (see README, Tests).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

# positive_data_acceptance says a request that satisfies the schema must not be refused with 400/422. That
# holds on every operation except where a rule depends on more than one value's shape, which JSON Schema
# cannot say. Only these operations may answer a schema-valid request with 422, each for the reason given;
# every other operation (and every new one) must accept what its schema allows.
DOMAIN_RULES: dict[str, str] = {
    "POST /v1/users": "time_zone must name an IANA zone",
    "PATCH /v1/users/{user_id}": "time_zone must name an IANA zone",
    "POST /v1/teams": "member_ids must name existing users",
    "PUT /v1/teams/{team_id}/members": "member_ids must name existing users",
    "POST /v1/schedules": "IANA zone; layer users must exist; windows and handoffs must be consistent",
    "PUT /v1/schedules/{schedule_id}": "IANA zone; layer users must exist; windows and handoffs must be consistent",
    "POST /v1/schedules/{schedule_id}/overrides": "the user must exist and the end must follow the start",
    "GET /v1/schedules/{schedule_id}/shifts": "`to` must follow `from` within the longest window served",
    "GET /v1/schedules/{schedule_id}/gaps": "`to` must follow `from` within the longest window served",
    "GET /v1/schedules/{schedule_id}/overrides": "`to` must follow `from` within the longest window served",
    "GET /v1/users/{user_id}/shifts": "`to` must follow `from` within the longest window served",
    "POST /v1/policies": "the schedules and users a rule pages must exist",
    "PUT /v1/policies/{policy_id}": "the schedules and users a rule pages must exist",
    "POST /v1/support-hours": "time_zone must name an IANA zone; windows must not overlap",
    "PUT /v1/support-hours/{support_hours_id}": "time_zone must name an IANA zone; windows must not overlap",
    "POST /v1/coverage-requests": "recipients must be active teammates; shifts must be the caller's, in the period",
    "GET /v1/coverage-requests": "a cursor must be one the service gave out",
    "GET /v1/coverage-requests/shifts": "`to` must follow `from`",
    "POST /v1/coverage-requests/{request_id}/accept": "chosen shifts must be shifts of the request",
    "PUT /v1/notification-preferences/{user_id}": "no step may appear twice",
    "GET /v1/call-alerts": "a cursor must be one the service gave out",
    "POST /v1/routing-numbers": "each option's policy (and the support hours) must be known to callrouter",
    "PUT /v1/routing-numbers/{number_id}": "each option's policy (and the support hours) must be known to callrouter",
}

CASES: Counter[str] = Counter()


def has_operations(service: str) -> bool:
    return bool(json.loads((DOCS / f"{service}.json").read_text()).get("paths"))


def call(case: schemathesis.Case, base_url: str) -> None:
    """Send `case` as an admin and validate the answer, keeping schemathesis' negative cases honest.

    Two things would otherwise make a correct answer look wrong: a generated query parameter whose value is an
    empty list is not sent at all (so the "extra parameter" the case claims never reaches us), and our admin
    token would undo a case that removed the Authorization header. Empty lists are sent as empty values,
    and a case that drops Authorization is sent without it, so each request says exactly what the case claims.
    """
    if case.query:
        case.query = {k: ("" if v == [] else v) for k, v in case.query.items()}
    phase = case.meta.phase if case.meta else None
    data = getattr(phase, "data", None)
    drops_auth = getattr(data, "parameter", None) == "Authorization" or any(
        getattr(m, "parameter", None) == "Authorization" for m in getattr(data, "mutations", ()) or ()
    )
    CASES[f"{phase.name if phase else 'explicit'}"] += 1
    excluded = [positive_data_acceptance] if case.operation.label in DOMAIN_RULES else []
    case.call_and_validate(base_url=base_url, headers=None if drops_auth else ADMIN, excluded_checks=excluded)


def fuzz_test(service: str) -> Callable[..., None]:
    schema = schemathesis.openapi.from_path(DOCS / f"{service}.json")
    schema.config.phases.update(phases=PHASES)

    @schema.parametrize()
    @FUZZ
    def test(case: schemathesis.Case, stack: Stack) -> None:
        call(case, stack.services[service].base_url)

    test.__name__ = f"test_{service}_api"
    return test


for _service in SERVICE_NAMES:
    if has_operations(_service):
        globals()[f"test_{_service}_api"] = fuzz_test(_service)


def test_domain_rules_name_operations_that_exist() -> None:
    """A renamed route must not silently keep its exemption under the old name."""
    documented = {
        f"{method.upper()} {path}"
        for service in SERVICE_NAMES
        for path, operations in json.loads((DOCS / f"{service}.json").read_text()).get("paths", {}).items()
        for method in operations
        if method != "parameters"
    }
    assert set(DOMAIN_RULES) <= documented


@pytest.fixture(scope="module", autouse=True)
def case_count(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None and CASES:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\napi fuzz: {sum(CASES.values())} requests, by phase {dict(CASES)}")
