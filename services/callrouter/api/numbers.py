"""Routes: routing numbers (admins only)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID, uuid4

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from services.callrouter.api import api
from services.callrouter.domain import (
    MAX_GREETING,
    MAX_KEYWORDS,
    MAX_NAME,
    MAX_OPTIONS,
    SUPPORTED_LANGUAGES,
    Option,
    OutsideHours,
    RoutingNumber,
)
from services.callrouter.service import numbers
from shared.auth import ADMINS
from shared.http import Call, Page
from shared.messages import E164, utcnow
from shared.runtime import POOL

Url = AnyHttpUrl


class OptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    digit: str = Field(pattern=r"^[0-9]$", description="The key that picks this option.")
    name: str = Field(min_length=1, max_length=MAX_NAME, description="Read in the menu: 'For <name>, press 1.'")
    policy_id: UUID = Field(description="The escalation policy whose responders are dialed.")
    keywords: list[str] = Field(
        default_factory=list,
        max_length=MAX_KEYWORDS,
        description="Words a caller may say instead of pressing the digit (the name counts too).",
    )

    def option(self) -> Option:
        return Option(self.digit, self.name, self.policy_id, tuple(self.keywords))


class NumberIn(BaseModel):
    """A phone number callrouter answers, and how it routes callers."""

    model_config = ConfigDict(extra="forbid")
    number: E164
    name: str = Field(min_length=1, max_length=MAX_NAME, description="Read to the responder who is dialed.")
    language: Literal[SUPPORTED_LANGUAGES] = Field(  # type: ignore[valid-type]
        default="en-US", description="Every text on the call is spoken in it."
    )
    options: list[OptionIn] = Field(min_length=1, max_length=MAX_OPTIONS)
    greeting: str = Field(default="", max_length=MAX_GREETING, description="Said instead of 'Welcome to <name>.'")
    only_greeting: bool = Field(default=False, description="Read only the greeting, not the menu of options.")
    voicemail: bool = Field(default=True, description="Callers nobody accepts can leave a message.")
    voicemail_only: bool = Field(default=False, description="Every caller goes straight to voicemail.")
    support_hours_id: UUID | None = None
    outside_hours: OutsideHours = Field(
        default="voicemail", description="Outside support hours: voicemail, or the `outside_options`."
    )
    outside_options: list[OptionIn] = Field(default_factory=list, max_length=MAX_OPTIONS)
    hold_music_url: Url | None = None
    greeting_audio_url: Url | None = Field(default=None, description="Played instead of the spoken menu.")
    voicemail_audio_url: Url | None = Field(default=None, description="Played instead of the voicemail prompt.")

    def domain(self, number_id: UUID) -> RoutingNumber:
        return RoutingNumber(
            id=number_id,
            number=self.number,
            name=self.name,
            language=self.language,
            options=tuple(o.option() for o in self.options),
            greeting=self.greeting,
            only_greeting=self.only_greeting,
            voicemail=self.voicemail,
            voicemail_only=self.voicemail_only,
            support_hours_id=self.support_hours_id,
            outside_hours=self.outside_hours,
            outside_options=tuple(o.option() for o in self.outside_options),
            hold_music_url=str(self.hold_music_url) if self.hold_music_url else None,
            greeting_audio_url=str(self.greeting_audio_url) if self.greeting_audio_url else None,
            voicemail_audio_url=str(self.voicemail_audio_url) if self.voicemail_audio_url else None,
        )


class ReplaceIn(NumberIn):
    version: int | None = Field(default=None, ge=1, description="Refuse (409) if the number changed since.")


class OptionOut(BaseModel):
    digit: str
    name: str
    policy_id: UUID
    keywords: list[str]


def _options(options: tuple[Option, ...]) -> list[OptionOut]:
    return [OptionOut(digit=o.digit, name=o.name, policy_id=o.policy_id, keywords=list(o.keywords)) for o in options]


class NumberOut(BaseModel):
    id: UUID
    number: str
    name: str
    language: str
    options: list[OptionOut]
    greeting: str
    only_greeting: bool
    voicemail: bool
    voicemail_only: bool
    support_hours_id: UUID | None
    outside_hours: OutsideHours
    outside_options: list[OptionOut]
    hold_music_url: str | None
    greeting_audio_url: str | None
    voicemail_audio_url: str | None
    version: int
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, n: RoutingNumber) -> NumberOut:
        return cls(
            id=n.id,
            number=n.number,
            name=n.name,
            language=n.language,
            options=_options(n.options),
            greeting=n.greeting,
            only_greeting=n.only_greeting,
            voicemail=n.voicemail,
            voicemail_only=n.voicemail_only,
            support_hours_id=n.support_hours_id,
            outside_hours=n.outside_hours,
            outside_options=_options(n.outside_options),
            hold_music_url=n.hold_music_url,
            greeting_audio_url=n.greeting_audio_url,
            voicemail_audio_url=n.voicemail_audio_url,
            version=n.version,
            created_at=n.created_at,
            updated_at=n.updated_at,
        )


NUMBER = {"number_id": UUID}


@api.route(
    "POST",
    "/v1/routing-numbers",
    summary="Add a routing number",
    roles=ADMINS,
    body=NumberIn,
    response=NumberOut,
    status=201,
    conflicts=True,
)
async def create_number(call: Call[NumberIn, None]) -> NumberOut:
    """Each option's policy (and the support hours) must be known to callrouter (published by schedule); a phone
    number already routed is a 409 naming its routing number."""
    return NumberOut.of(await numbers.create(call.app[POOL], call.body.domain(uuid4()), utcnow()))


@api.route(
    "GET", "/v1/routing-numbers", summary="List routing numbers", roles=ADMINS, query=Page, response=list[NumberOut]
)
async def list_numbers(call: Call[None, Page]) -> list[NumberOut]:
    return [NumberOut.of(n) for n in await numbers.listing(call.app[POOL], call.query.limit, call.query.offset)]


@api.route(
    "GET",
    "/v1/routing-numbers/{number_id}",
    summary="Get a routing number",
    roles=ADMINS,
    path_types=NUMBER,
    response=NumberOut,
)
async def get_number(call: Call[None, None]) -> NumberOut:
    return NumberOut.of(await numbers.get(call.app[POOL], call.path["number_id"]))


@api.route(
    "PUT",
    "/v1/routing-numbers/{number_id}",
    summary="Replace a routing number's configuration",
    roles=ADMINS,
    body=ReplaceIn,
    path_types=NUMBER,
    response=NumberOut,
    conflicts=True,
)
async def replace_number(call: Call[ReplaceIn, None]) -> NumberOut:
    """Calls already in progress carry on with what they were told."""
    changed = call.body.domain(call.path["number_id"])
    return NumberOut.of(await numbers.replace(call.app[POOL], changed, utcnow(), call.body.version))


@api.route(
    "DELETE",
    "/v1/routing-numbers/{number_id}",
    summary="Stop answering a routing number",
    roles=ADMINS,
    path_types=NUMBER,
    status=204,
)
async def delete_number(call: Call[None, None]) -> None:
    await numbers.delete(call.app[POOL], call.path["number_id"])
