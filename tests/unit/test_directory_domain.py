from uuid import uuid4

import pytest

from services.schedule import domain
from shared.errors import InvalidInput


def a_user(**overrides: object) -> domain.User:
    fields: dict[str, object] = {
        "id": uuid4(),
        "name": "Ada",
        "email": "ada@example.com",
        "phone": "+4915112345678",
        "time_zone": "Europe/Berlin",
        "language": "de-DE",
        "role": "responder",
    }
    return domain.new_user(**(fields | overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("time_zone", "Mars/Olympus"),
        ("time_zone", "../../etc/passwd"),
        ("phone", "015112345678"),
        ("email", "not-an-address"),
        ("language", "german"),
        ("role", "root"),
        ("name", "   "),
    ],
)
def test_invalid_profile_fields_name_the_field(field: str, value: str) -> None:
    with pytest.raises(InvalidInput) as err:
        a_user(**{field: value})
    assert err.value.field == field


def test_a_valid_user_is_normalised() -> None:
    user = a_user(name="  Ada  ")
    assert user.name == "Ada"
    assert user.version == 1 and user.active


def test_a_responder_edits_their_profile_and_the_version_moves() -> None:
    user = a_user()
    edited = domain.edit_user(user, {"time_zone": "Asia/Kolkata", "phone": None}, by_admin=False)
    assert (edited.time_zone, edited.phone, edited.version) == ("Asia/Kolkata", None, 2)


@pytest.mark.parametrize("field", ["role", "active"])
def test_only_an_admin_changes_role_or_active(field: str) -> None:
    user = a_user()
    value = "admin" if field == "role" else False
    with pytest.raises(PermissionError):
        domain.edit_user(user, {field: value}, by_admin=False)
    assert getattr(domain.edit_user(user, {field: value}, by_admin=True), field) == value


def test_an_edit_is_checked_like_a_new_user() -> None:
    with pytest.raises(InvalidInput) as err:
        domain.edit_user(a_user(), {"time_zone": "Nowhere/Land"}, by_admin=True)
    assert err.value.field == "time_zone"


def test_unknown_fields_cannot_be_edited() -> None:
    with pytest.raises(InvalidInput):
        domain.edit_user(a_user(), {"id": uuid4()}, by_admin=True)


def test_team_members_must_exist_and_be_unique() -> None:
    known = {uuid4(), uuid4()}
    a, b = sorted(known)
    stranger = uuid4()
    with pytest.raises(InvalidInput, match=str(stranger)):
        domain.new_team(uuid4(), "SRE", [a, stranger], known)
    with pytest.raises(InvalidInput, match="twice"):
        domain.new_team(uuid4(), "SRE", [a, a], known)
    team = domain.new_team(uuid4(), "SRE", [b, a], known)
    assert team.member_ids == (b, a)
    assert domain.change_members(team, [a], known).version == 2
