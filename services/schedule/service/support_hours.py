"""Support hours: weekly staffed windows in a zone, minus holidays."""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID, uuid4

import asyncpg

from services.schedule import domain, store
from services.schedule.domain.policies import SupportHours, new_support_hours
from services.schedule.domain.shifts import describe_windows
from services.schedule.service import unique
from services.schedule.service.commands import DefineSupportHours
from services.schedule.service.schedules import windows_of
from shared.db import transaction
from shared.errors import found
from shared.messages import SupportHoursSnapshot, WeeklyWindow
from shared.outbox import enqueue


def weekly_windows(hours: SupportHours) -> list[WeeklyWindow]:
    return [WeeklyWindow(days=d, start=s, end=e) for d, s, e in describe_windows(hours.windows)]  # type: ignore[arg-type]


def support_hours_snapshot(hours: SupportHours) -> SupportHoursSnapshot:
    return SupportHoursSnapshot(
        support_hours_id=hours.id, version=hours.version, name=hours.name, time_zone=hours.time_zone,
        windows=weekly_windows(hours), holidays=list(hours.holidays),
    )


def _checked(hours_id: UUID, cmd: DefineSupportHours, version: int) -> SupportHours:
    hours = new_support_hours(
        hours_id, cmd.name, domain.check_time_zone(cmd.time_zone), windows_of(cmd.windows, "windows"), cmd.holidays
    )
    return replace(hours, version=version)


async def create_support_hours(pool: asyncpg.Pool, cmd: DefineSupportHours) -> SupportHours:
    """Define support hours and publish their snapshot."""
    hours = _checked(uuid4(), cmd, 1)
    async with transaction(pool) as conn:
        with unique(f"support hours named {hours.name} exist"):
            await store.insert_support_hours(conn, hours)
        await enqueue(conn, support_hours_snapshot(hours))
    return hours


async def replace_support_hours(pool: asyncpg.Pool, hours_id: UUID, cmd: DefineSupportHours) -> SupportHours:
    """Replace support hours' windows, zone and holidays, and publish their snapshot."""
    async with transaction(pool) as conn:
        current = found(await store.get_support_hours(conn, hours_id, lock=True), f"support hours {hours_id}")
        hours = _checked(hours_id, cmd, current.version + 1)
        with unique(f"support hours named {hours.name} exist"):
            await store.update_support_hours(conn, hours)
        await enqueue(conn, support_hours_snapshot(hours))
    return hours


async def get_support_hours(pool: asyncpg.Pool, hours_id: UUID) -> SupportHours:
    return found(await store.get_support_hours(pool, hours_id), f"support hours {hours_id}")


async def list_support_hours(pool: asyncpg.Pool, limit: int, offset: int) -> list[SupportHours]:
    return await store.list_support_hours(pool, limit=limit, offset=offset)
