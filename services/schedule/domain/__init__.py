"""Directory rules: who a user is, what they may change about themself, and what a team holds."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import get_args
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.errors import InvalidInput
from shared.messages import E164_PATTERN, Role

ROLES: tuple[str, ...] = get_args(Role)
SELF_EDITABLE = frozenset({"name", "email", "phone", "time_zone", "language"})
ADMIN_ONLY = frozenset({"role", "active"})

_E164 = re.compile(E164_PATTERN)
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[A-Z]{2})?$"
_EMAIL = re.compile(EMAIL_PATTERN)
_LANGUAGE = re.compile(LANGUAGE_PATTERN)


DirectoryError = InvalidInput


@lru_cache(maxsize=1024)
def is_time_zone(name: str) -> bool:
    if not name or len(name) > 64:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a tzdata folder such as "America"
        return False
    return True


def check_time_zone(name: str) -> str:
    if not is_time_zone(name):
        raise DirectoryError("time_zone", f"'{name}' is not an IANA time zone")
    return name


def check_phone(phone: str | None) -> str | None:
    if phone is not None and not _E164.match(phone):
        raise DirectoryError("phone", "phone must be in E.164 form, e.g. +4915112345678")
    return phone


def check_email(email: str) -> str:
    if not _EMAIL.match(email):
        raise DirectoryError("email", f"'{email}' is not an e-mail address")
    return email


def check_language(language: str) -> str:
    if not _LANGUAGE.match(language):
        raise DirectoryError("language", "language must be a tag like 'en' or 'de-DE'")
    return language


def check_role(role: str) -> str:
    if role not in ROLES:
        raise DirectoryError("role", f"role must be one of {', '.join(ROLES)}")
    return role


@dataclass(frozen=True)
class User:
    id: UUID
    name: str
    email: str
    phone: str | None
    time_zone: str
    language: str
    role: str
    active: bool = True
    version: int = 1


def new_user(
    id: UUID, name: str, email: str, phone: str | None, time_zone: str, language: str, role: str
) -> User:
    if not name.strip():
        raise DirectoryError("name", "name must not be empty")
    return User(
        id=id,
        name=name.strip(),
        email=check_email(email),
        phone=check_phone(phone),
        time_zone=check_time_zone(time_zone),
        language=check_language(language),
        role=check_role(role),
    )


def edit_user(user: User, changes: dict[str, object], *, by_admin: bool) -> User:
    """`user` with `changes` applied; a non-admin may change only their own profile fields."""
    unknown = set(changes) - SELF_EDITABLE - ADMIN_ONLY
    if unknown:
        raise DirectoryError(sorted(unknown)[0], "this field cannot be changed")
    if not by_admin and set(changes) & ADMIN_ONLY:
        raise PermissionError(f"only an admin may change {', '.join(sorted(set(changes) & ADMIN_ONLY))}")
    if not changes:
        return user
    edited = replace(user, **changes)  # type: ignore[arg-type]
    checked = new_user(
        edited.id, edited.name, edited.email, edited.phone, edited.time_zone, edited.language, edited.role
    )
    return replace(checked, active=edited.active, version=user.version + 1)


@dataclass(frozen=True)
class Team:
    id: UUID
    name: str
    member_ids: tuple[UUID, ...]
    version: int = 1


def new_team(id: UUID, name: str, member_ids: list[UUID], known_user_ids: set[UUID]) -> Team:
    if not name.strip():
        raise DirectoryError("name", "name must not be empty")
    return Team(id=id, name=name.strip(), member_ids=check_members(member_ids, known_user_ids))


def change_members(team: Team, member_ids: list[UUID], known_user_ids: set[UUID]) -> Team:
    return replace(team, member_ids=check_members(member_ids, known_user_ids), version=team.version + 1)


def check_members(member_ids: list[UUID], known_user_ids: set[UUID]) -> tuple[UUID, ...]:
    unknown = [str(u) for u in member_ids if u not in known_user_ids]
    if unknown:
        raise DirectoryError("member_ids", f"unknown user ids: {', '.join(unknown)}")
    if len(set(member_ids)) != len(member_ids):
        raise DirectoryError("member_ids", "a user appears twice")
    return tuple(member_ids)
