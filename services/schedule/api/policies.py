"""Routes: escalation policies, and who each rule pages at an instant."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from services.schedule.api import api
from services.schedule.api.directory import Name
from services.schedule.domain.policies import Policy
from services.schedule.service import policies
from services.schedule.service.commands import DefinePolicy, RuleSpec
from shared.auth import ADMINS, ANYONE
from shared.http import At, Call, Page
from shared.messages import PolicyRule, utcnow
from shared.runtime import POOL


class PolicyIn(BaseModel):
    """Rules run in order: each pages its users and whoever is on call on its schedules (one of several
    responders, picked by the caller), then escalates after `timeout_minutes`; the list runs `repeat` more times."""

    model_config = ConfigDict(extra="forbid")
    name: Name
    repeat: int = Field(default=0, ge=0, le=10)
    rules: list[PolicyRule] = Field(min_length=1, max_length=20)

    def command(self) -> DefinePolicy:
        rules = tuple(RuleSpec(r.timeout_minutes, tuple(r.user_ids), tuple(r.schedule_ids)) for r in self.rules)
        return DefinePolicy(self.name, rules, self.repeat)


class PolicyOut(BaseModel):
    id: UUID
    version: int
    name: str
    repeat: int
    rules: list[PolicyRule]

    @classmethod
    def of(cls, policy: Policy) -> PolicyOut:
        snapshot = policies.policy_snapshot(policy)
        return cls(id=policy.id, version=policy.version, name=policy.name, repeat=policy.repeat, rules=snapshot.rules)


class StepOut(BaseModel):
    rule: int
    timeout_minutes: int
    responders: list[UUID]


class PolicyOnCallOut(BaseModel):
    policy_id: UUID
    at: datetime
    steps: list[StepOut]


POLICY = {"policy_id": UUID}


@api.route("POST", "/v1/policies", summary="Create an escalation policy", roles=ADMINS, body=PolicyIn,
           response=PolicyOut, status=201, conflicts=True)
async def create_policy(call: Call[PolicyIn, None]) -> PolicyOut:
    return PolicyOut.of(await policies.create_policy(call.app[POOL], call.body.command()))


@api.route("GET", "/v1/policies", summary="List escalation policies", roles=ANYONE, query=Page,
           response=list[PolicyOut])
async def list_policies(call: Call[None, Page]) -> list[PolicyOut]:
    return [PolicyOut.of(p) for p in await policies.list_policies(call.app[POOL], call.query.limit, call.query.offset)]


@api.route("GET", "/v1/policies/{policy_id}", summary="Get an escalation policy", roles=ANYONE, path_types=POLICY,
           response=PolicyOut)
async def get_policy(call: Call[None, None]) -> PolicyOut:
    return PolicyOut.of(await policies.get_policy(call.app[POOL], call.path["policy_id"]))


@api.route("PUT", "/v1/policies/{policy_id}", summary="Replace an escalation policy", roles=ADMINS, path_types=POLICY,
           body=PolicyIn, response=PolicyOut, conflicts=True)
async def replace_policy(call: Call[PolicyIn, None]) -> PolicyOut:
    return PolicyOut.of(await policies.replace_policy(call.app[POOL], call.path["policy_id"], call.body.command()))


@api.route("GET", "/v1/policies/{policy_id}/oncall", summary="Who each rule of a policy pages at an instant",
           roles=ANYONE, path_types=POLICY, query=At, response=PolicyOnCallOut)
async def policy_on_call(call: Call[None, At]) -> PolicyOnCallOut:
    at = call.query.at or utcnow()
    _, steps = await policies.policy_on_call(call.app[POOL], call.path["policy_id"], at)
    out = [StepOut(rule=s.rule, timeout_minutes=s.timeout_minutes, responders=list(s.responders)) for s in steps]
    return PolicyOnCallOut(policy_id=call.path["policy_id"], at=at, steps=out)
