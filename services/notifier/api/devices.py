"""Routes: the caller's devices (push tokens)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from services.notifier.api import api
from services.notifier.domain import Device, Platform
from services.notifier.service import devices
from shared.auth import ANYONE
from shared.http import Call
from shared.messages import utcnow
from shared.runtime import POOL

# APNs tokens are 64 hex digits, FCM registration tokens about 160 URL-safe characters; both printable ASCII.
PushToken = Annotated[str, Field(min_length=8, max_length=4096, pattern=r"^[A-Za-z0-9_:\-.]+$")]
AppVersion = Annotated[str, Field(max_length=64, pattern=r"^[\x20-\x7e]*$")]


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    platform: Platform
    token: PushToken
    app_version: AppVersion = ""
    critical_allowed: StrictBool = Field(
        default=False, description="The user allowed critical alerts (iOS) / the DND-bypassing channel (Android)."
    )


class DeviceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: PushToken
    app_version: AppVersion = ""
    critical_allowed: StrictBool = False


class DeviceOut(BaseModel):
    id: UUID
    user_id: UUID
    platform: Platform
    token: str
    app_version: str
    critical_allowed: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, d: Device) -> DeviceOut:
        return cls.model_validate(d, from_attributes=True)


class DevicesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: UUID | None = Field(default=None, description="Another user's devices (admins only).")


DEVICE = {"device_id": UUID}


@api.route("POST", "/v1/devices", summary="Register this phone for pushes", roles=ANYONE, body=DeviceIn,
           response=DeviceOut, status=201)
async def register_device(call: Call[DeviceIn, None]) -> DeviceOut:
    """Registering a known token again refreshes it (same id); a token someone else registered moves to you."""
    b = call.body
    device = await devices.register(call.app[POOL], call.actor, b.platform, b.token, b.app_version,
                                    b.critical_allowed, utcnow())
    return DeviceOut.of(device)


@api.route("GET", "/v1/devices", summary="My devices", roles=ANYONE, query=DevicesQuery, response=list[DeviceOut])
async def list_devices(call: Call[None, DevicesQuery]) -> list[DeviceOut]:
    user_id = call.query.user_id or call.actor.user_id
    return [DeviceOut.of(d) for d in await devices.listing(call.app[POOL], call.actor, user_id)]


@api.route("PUT", "/v1/devices/{device_id}", summary="Refresh a device's token or details", roles=ANYONE,
           path_types=DEVICE, body=DeviceUpdate, response=DeviceOut)
async def refresh_device(call: Call[DeviceUpdate, None]) -> DeviceOut:
    """Another user's device is a 404, as an unknown one."""
    b = call.body
    device = await devices.refresh(call.app[POOL], call.actor, call.path["device_id"], b.token, b.app_version,
                                   b.critical_allowed, utcnow())
    return DeviceOut.of(device)


@api.route("DELETE", "/v1/devices/{device_id}", summary="Stop pushing to a device", roles=ANYONE,
           path_types=DEVICE, status=204)
async def remove_device(call: Call[None, None]) -> None:
    await devices.remove(call.app[POOL], call.actor, call.path["device_id"])
