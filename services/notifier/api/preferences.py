"""Routes: a user's notification preferences."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from services.notifier.api import api
from services.notifier.domain import MAX_STEPS, Channel, Preferences, Step
from services.notifier.service import preferences
from shared.auth import ANYONE
from shared.http import Call
from shared.runtime import POOL


class StepModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: Channel
    after_minutes: StrictInt = Field(ge=0, le=1440, description="Minutes after the notification, if not acknowledged.")

    def step(self) -> Step:
        return Step(self.channel, timedelta(minutes=self.after_minutes))

    @classmethod
    def of(cls, s: Step) -> StepModel:
        return cls(channel=s.channel, after_minutes=int(s.after.total_seconds() // 60))


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    high: list[StepModel] = Field(min_length=1, max_length=MAX_STEPS, description="High and critical urgency.")
    low: list[StepModel] = Field(min_length=1, max_length=MAX_STEPS)


class PreferencesOut(BaseModel):
    user_id: UUID
    high: list[StepModel]
    low: list[StepModel]
    source: Literal["default", "user"]

    @classmethod
    def of(cls, user_id: UUID, p: Preferences) -> PreferencesOut:
        return cls(user_id=user_id, high=[StepModel.of(s) for s in p.high], low=[StepModel.of(s) for s in p.low],
                   source="user" if p.version else "default")


USER = {"user_id": UUID}


@api.route("GET", "/v1/notification-preferences/{user_id}", summary="How a user wants to be reached",
           roles=ANYONE, path_types=USER, response=PreferencesOut)
async def get_preferences(call: Call[None, None]) -> PreferencesOut:
    """The user themself or an admin. A user who never set any has the defaults: push at once; for high
    urgency also a voice call after 2 minutes if not acknowledged."""
    user_id = call.path["user_id"]
    return PreferencesOut.of(user_id, await preferences.read(call.app[POOL], call.actor, user_id))


@api.route("PUT", "/v1/notification-preferences/{user_id}", summary="Set how a user wants to be reached",
           roles=ANYONE, path_types=USER, body=PreferencesIn, response=PreferencesOut)
async def put_preferences(call: Call[PreferencesIn, None]) -> PreferencesOut:
    """The user themself or an admin. Steps run in order of time; at least one per urgency."""
    user_id = call.path["user_id"]
    saved = await preferences.define(call.app[POOL], call.actor, user_id, [s.step() for s in call.body.high],
                                     [s.step() for s in call.body.low])
    return PreferencesOut.of(user_id, saved)
