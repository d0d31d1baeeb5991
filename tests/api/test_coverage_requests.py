"""Coverage requests through coverage's real web app and PostgreSQL; schedule's answers and timelines are fed
through coverage's own consumer use cases. Timelines here: `amy` holds the even days (0 = today), `ben`
the odd ones, on one schedule; amy, ben and cat share a team, dan is in no team with amy."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

import services.coverage.api.requests as routes
from tests.api.conftest import Client, assert_422, call
from tests.api.coverage_world import World, period, shift


@pytest.fixture(autouse=True)
def quick_accept(monkeypatch: pytest.MonkeyPatch) -> None:
    # No schedule answers in this tier: accept would wait its full 1.5 s for nothing.
    monkeypatch.setattr(routes, "ACCEPT_WAIT_S", 0.05)


@pytest.fixture
async def world(coverage_pool: asyncpg.Pool) -> World:
    w = World(coverage_pool)
    amy, ben, cat = await w.user("amy"), await w.user("ben"), await w.user("cat")
    await w.user("dan")
    await w.user("eve", role="observer")
    await w.user("zed", active=False)
    await w.team(amy, ben, cat, w.users["zed"], w.users["eve"])
    w.schedule = uuid.uuid4()  # type: ignore[attr-defined]
    await w.timeline(w.schedule, [ben, amy])  # type: ignore[attr-defined]
    return w


def body(w: World, days: list[int], recipients: list[str] = ["ben"], **extra: Any) -> dict[str, Any]:  # noqa: B006
    return {
        "recipient_ids": [str(w.users[r]) for r in recipients],
        **period(min(days), max(days)),
        "shifts": [shift(w.schedule, d) for d in days],  # type: ignore[attr-defined]
        "message": "family dinner",
    } | extra


async def create(
    client: Client, w: World, days: list[int], recipients: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    if recipients is None:
        recipients = ["ben"]
    status, created = await call(
        client, "POST", "/v1/coverage-requests", json=body(w, days, recipients, **extra), headers=w.headers("amy")
    )
    assert status == 201, created
    return created  # type: ignore[no-any-return]


async def test_create_tells_each_recipient_once_and_shows_in_both_lists(coverage_client: Client, world: World) -> None:
    created = await create(coverage_client, world, [2, 4], ["ben", "cat"])
    assert created["status"] == "pending"
    assert created["requester_id"] == str(world.users["amy"])
    assert [s["start"][:10] for s in created["shifts"]] == [
        shift(world.schedule, 2)["start"][:10],
        shift(world.schedule, 4)["start"][:10],
    ]  # type: ignore[attr-defined]
    assert sorted(await world.told(created["id"])) == [
        ("ben", f"created:{world.users['ben']}"),
        ("cat", f"created:{world.users['cat']}"),
    ]
    status, received = await call(coverage_client, "GET", "/v1/coverage-requests", headers=world.headers("ben"))
    assert status == 200 and created["id"] in [r["id"] for r in received["items"]]
    status, sent = await call(coverage_client, "GET", "/v1/coverage-requests?box=sent", headers=world.headers("amy"))
    assert status == 200 and sent["items"][0]["id"] == created["id"]
    status, badge = await call(coverage_client, "GET", "/v1/coverage-requests/badge", headers=world.headers("cat"))
    assert status == 200 and badge["pending"] >= 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"recipient_ids": "amy"}, "recipient_ids.0"),  # the requester
        ({"recipient_ids": "zed"}, "recipient_ids.0"),  # deactivated
        ({"recipient_ids": "dan"}, "recipient_ids.0"),  # not a teammate
        ({"recipient_ids": "nobody"}, "recipient_ids.0"),  # unknown
        ({"days": [3]}, "shifts.0"),  # ben's day, not amy's
        ({"days": [80]}, "shifts.0"),  # beyond the published horizon
        ({"outside": True}, "shifts.0"),  # shift outside the period
        ({"end_before_start": True}, "end"),
        ({"past": True}, "end"),
        ({"message": "x" * 1001}, "message"),
        ({"started": True}, "shifts.0.start"),
        ({"unknown_schedule": True}, "shifts.0"),
        ({"half_shift": True}, "shifts.0"),
        ({"twice": True}, "shifts.1"),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    coverage_client: Client, world: World, change: dict[str, Any], field: str
) -> None:
    payload = body(world, change.get("days", [2]))
    if "recipient_ids" in change:
        who = change["recipient_ids"]
        payload["recipient_ids"] = [str(world.users.get(who, uuid.uuid4()))]
    if change.get("outside"):
        payload |= period(4, 6)
    if change.get("end_before_start"):
        payload["end"] = payload["start"]
    if change.get("past"):
        payload |= period(-5, -3)
        payload["shifts"] = [shift(world.schedule, -4)]  # type: ignore[attr-defined]
    if "message" in change:
        payload["message"] = change["message"]
    if change.get("started"):
        payload |= period(0, 0)
        payload["shifts"] = [shift(world.schedule, 0)]  # type: ignore[attr-defined]
    if change.get("unknown_schedule"):
        payload["shifts"] = [shift(uuid.uuid4(), 2)]
    if change.get("half_shift"):
        payload["shifts"][0]["end"] = payload["shifts"][0]["start"][:11] + "12:00:00+00:00"
    if change.get("twice"):
        payload["shifts"] = [shift(world.schedule, 2)] * 2  # type: ignore[attr-defined]
    status, problem = await call(
        coverage_client, "POST", "/v1/coverage-requests", json=payload, headers=world.headers("amy")
    )
    assert_422(status, problem, field)


async def test_two_open_requests_cannot_claim_one_shift(coverage_client: Client, world: World) -> None:
    first = await create(coverage_client, world, [6])
    status, problem = await call(
        coverage_client, "POST", "/v1/coverage-requests", json=body(world, [6], ["cat"]), headers=world.headers("amy")
    )
    assert status == 409, problem
    assert problem["request_id"] == first["id"] and first["id"] in problem["detail"]
    # once the first ends, the shift is free again
    status, _ = await call(
        coverage_client, "POST", f"/v1/coverage-requests/{first['id']}/cancel", headers=world.headers("amy")
    )
    assert status == 200
    await create(coverage_client, world, [6], ["cat"])


async def test_observers_cannot_create_and_strangers_see_nothing(coverage_client: Client, world: World) -> None:
    status, _ = await call(
        coverage_client,
        "POST",
        "/v1/coverage-requests",
        json=body(world, [8]),
        headers=world.headers("eve", "observer"),
    )
    assert status == 403
    created = await create(coverage_client, world, [8])
    rid = created["id"]
    for method, path in [("GET", ""), ("POST", "/accept"), ("POST", "/decline"), ("POST", "/cancel")]:
        kw = {"json": {}} if path in ("/accept", "/decline") else {}
        status, problem = await call(
            coverage_client, method, f"/v1/coverage-requests/{rid}{path}", headers=world.headers("dan"), **kw
        )
        assert status == 404, (path, problem)
    status, _ = await call(coverage_client, "GET", "/v1/coverage-requests?box=all", headers=world.headers("dan"))
    assert status == 403
    # nothing changed for the people involved
    status, seen = await call(coverage_client, "GET", f"/v1/coverage-requests/{rid}", headers=world.headers("ben"))
    assert status == 200 and seen["status"] == "pending"
    # the requester may not accept their own request; a recipient may not cancel it
    status, _ = await call(
        coverage_client, "POST", f"/v1/coverage-requests/{rid}/accept", json={}, headers=world.headers("amy")
    )
    assert status == 403
    status, _ = await call(coverage_client, "POST", f"/v1/coverage-requests/{rid}/cancel", headers=world.headers("ben"))
    assert status == 403


async def test_accept_waits_for_schedule_then_both_are_told(coverage_client: Client, world: World) -> None:
    created = await create(coverage_client, world, [10, 12])
    rid = created["id"]
    status, accepting = await call(
        coverage_client, "POST", f"/v1/coverage-requests/{rid}/accept", json={}, headers=world.headers("ben")
    )
    assert status == 202 and accepting["status"] == "accepting"
    [asked] = await world.staged(rid, "CoverageRequestAccepted")
    assert asked["covering_user_id"] == str(world.users["ben"]) and len(asked["shifts"]) == 2
    # the same accept again: the same answer, no second message to schedule
    status, again = await call(
        coverage_client, "POST", f"/v1/coverage-requests/{rid}/accept", json={}, headers=world.headers("ben")
    )
    assert status == 202 and again["status"] == "accepting"
    assert len(await world.staged(rid, "CoverageRequestAccepted")) == 1
    # cancelling now is refused with the current state
    status, problem = await call(
        coverage_client, "POST", f"/v1/coverage-requests/{rid}/cancel", headers=world.headers("amy")
    )
    assert status == 409 and problem["state"] == "accepting"
    answer = await world.applied(rid, world.users["ben"], asked["shifts"])
    await world.applied(rid, world.users["ben"], asked["shifts"])  # a re-sent acceptance answered twice
    await asyncio.sleep(0)
    status, done = await call(coverage_client, "GET", f"/v1/coverage-requests/{rid}", headers=world.headers("amy"))
    assert done["status"] == "accepted" and done["covering_user_id"] == str(world.users["ben"])
    assert [s["covered"] for s in done["shifts"]] == [True, True]
    assert [h["status"] for h in done["history"]] == ["pending", "accepting", "accepted"]
    assert done["history"][1]["actor_id"] == str(world.users["ben"]) and done["history"][2]["actor_id"] is None
    told = await world.told(rid)
    assert sorted(t for t in told if t[1].startswith("accepted")) == [
        ("amy", f"accepted:{world.users['amy']}"),
        ("ben", f"accepted:{world.users['ben']}"),
    ]
    # a redelivered answer (same event) has no effect at all
    from services.coverage.service import workflow
    from shared.messages import utcnow

    await workflow.on_outcome(world.pool, answer, utcnow())
    assert await world.told(rid) == told
    status, problem = await call(
        coverage_client, "POST", f"/v1/coverage-requests/{rid}/cancel", headers=world.headers("amy")
    )
    assert status == 409 and problem["state"] == "accepted"


async def test_partial_acceptance_takes_only_the_chosen_shifts(coverage_client: Client, world: World) -> None:
    created = await create(coverage_client, world, [14, 16])
    rid = created["id"]
    status, accepting = await call(
        coverage_client,
        "POST",
        f"/v1/coverage-requests/{rid}/accept",
        json={"shifts": [shift(world.schedule, 16)]},
        headers=world.headers("ben"),
    )  # type: ignore[attr-defined]
    assert status == 202, accepting
    [asked] = await world.staged(rid, "CoverageRequestAccepted")
    assert [s["start"][:10] for s in asked["shifts"]] == [shift(world.schedule, 16)["start"][:10]]  # type: ignore[attr-defined]
    # the shift left with the requester can be asked of someone else at once
    await create(coverage_client, world, [14], ["cat"])
    await world.applied(rid, world.users["ben"], asked["shifts"])
    status, done = await call(coverage_client, "GET", f"/v1/coverage-requests/{rid}", headers=world.headers("ben"))
    assert done["status"] == "accepted" and [s["covered"] for s in done["shifts"]] == [False, True]
    status, problem = await call(
        coverage_client,
        "POST",
        f"/v1/coverage-requests/{rid}/accept",
        json={"shifts": [shift(world.schedule, 14)]},
        headers=world.headers("cat"),
    )  # type: ignore[attr-defined]
    assert status == 404, problem  # cat was not asked


async def test_a_shift_not_in_the_request_cannot_be_accepted(coverage_client: Client, world: World) -> None:
    created = await create(coverage_client, world, [20])
    status, problem = await call(
        coverage_client,
        "POST",
        f"/v1/coverage-requests/{created['id']}/accept",
        json={"shifts": [shift(world.schedule, 22)]},
        headers=world.headers("ben"),
    )  # type: ignore[attr-defined]
    assert_422(status, problem, "shifts.0")


async def test_broadcast_first_acceptance_wins_and_the_others_see_it_taken(
    coverage_client: Client, world: World
) -> None:
    created = await create(coverage_client, world, [24], ["ben", "cat"])
    rid = created["id"]
    answers = await asyncio.gather(
        *(
            call(coverage_client, "POST", f"/v1/coverage-requests/{rid}/accept", json={}, headers=world.headers(who))
            for who in ("ben", "cat")
        )
    )
    statuses = sorted(s for s, _ in answers)
    assert statuses == [202, 409], answers
    loser = next(b for s, b in answers if s == 409)
    assert loser["state"] == "accepting" and loser["covering_user_id"] in (
        str(world.users["ben"]),
        str(world.users["cat"]),
    )
    assert len(await world.staged(rid, "CoverageRequestAccepted")) == 1


async def test_accept_racing_cancel_has_exactly_one_winner(coverage_client: Client, world: World) -> None:
    for day in (26, 28, 30, 32):
        created = await create(coverage_client, world, [day])
        rid = created["id"]
        accept, cancel = await asyncio.gather(
            call(coverage_client, "POST", f"/v1/coverage-requests/{rid}/accept", json={}, headers=world.headers("ben")),
            call(coverage_client, "POST", f"/v1/coverage-requests/{rid}/cancel", headers=world.headers("amy")),
        )
        assert sorted([accept[0], cancel[0]]) in ([200, 409], [202, 409]), (accept, cancel)
        _, final = await call(coverage_client, "GET", f"/v1/coverage-requests/{rid}", headers=world.headers("amy"))
        asked = await world.staged(rid, "CoverageRequestAccepted")
        assert (final["status"], len(asked)) in (("accepting", 1), ("cancelled", 0)), final


async def test_decline_by_every_recipient_declines_and_both_are_told(coverage_client: Client, world: World) -> None:
    created = await create(coverage_client, world, [34], ["ben", "cat"])
    rid = created["id"]
    status, after_one = await call(
        coverage_client,
        "POST",
        f"/v1/coverage-requests/{rid}/decline",
        json={"reason": "away"},
        headers=world.headers("ben"),
    )
    assert status == 200 and after_one["status"] == "pending"
    status, _again = await call(
        coverage_client, "POST", f"/v1/coverage-requests/{rid}/decline", json={}, headers=world.headers("ben")
    )
    assert status == 200
    status, _problem = await call(
        coverage_client, "POST", f"/v1/coverage-requests/{rid}/accept", json={}, headers=world.headers("ben")
    )
    assert status == 409
    status, last = await call(
        coverage_client, "POST", f"/v1/coverage-requests/{rid}/decline", json={}, headers=world.headers("cat")
    )
    assert status == 200 and last["status"] == "declined"
    told = sorted(await world.told(rid))
    ben, cat = world.users["ben"], world.users["cat"]
    assert [t for t in told if t[1].startswith("declined")] == sorted(
        [
            ("amy", f"declined:{ben}:{world.users['amy']}"),
            ("ben", f"declined:{ben}:{ben}"),
            ("amy", f"declined:{cat}:{world.users['amy']}"),
            ("cat", f"declined:{cat}:{cat}"),
        ]
    )


async def test_cancel_tells_the_recipients_and_frees_the_shift(coverage_client: Client, world: World) -> None:
    created = await create(coverage_client, world, [36], ["ben", "cat"])
    rid = created["id"]
    status, done = await call(
        coverage_client, "POST", f"/v1/coverage-requests/{rid}/cancel", headers=world.headers("amy")
    )
    assert status == 200 and done["status"] == "cancelled"
    assert sorted(t for t in await world.told(rid) if t[1].startswith("cancelled")) == [
        ("ben", f"cancelled:{world.users['ben']}"),
        ("cat", f"cancelled:{world.users['cat']}"),
    ]
    status, problem = await call(
        coverage_client, "POST", f"/v1/coverage-requests/{rid}/accept", json={}, headers=world.headers("ben")
    )
    assert status == 409 and problem["state"] == "cancelled"


async def test_a_new_timeline_makes_a_pending_request_obsolete(coverage_client: Client, world: World) -> None:
    other = uuid.uuid4()
    await world.timeline(other, [world.users["ben"], world.users["amy"]])
    payload = body(world, [2])
    payload["shifts"] = [shift(other, 2)]
    status, created = await call(
        coverage_client, "POST", "/v1/coverage-requests", json=payload, headers=world.headers("amy")
    )
    assert status == 201, created
    # an admin override puts cat on amy's days: the request no longer applies
    await world.timeline(other, [world.users["ben"], world.users["cat"]])
    status, done = await call(
        coverage_client, "GET", f"/v1/coverage-requests/{created['id']}", headers=world.headers("amy")
    )
    assert done["status"] == "obsolete" and "not the requester" in done["reason"]
    assert sorted(t[0] for t in await world.told(created["id"]) if t[1].startswith("obsolete")) == ["amy", "ben"]
    # an older timeline arriving late changes nothing
    await world.timeline(other, [world.users["ben"], world.users["amy"]], version=1)
    status, still = await call(
        coverage_client, "GET", f"/v1/coverage-requests/{created['id']}", headers=world.headers("amy")
    )
    assert still["status"] == "obsolete"


async def test_schedule_rejecting_an_acceptance_ends_it_obsolete(coverage_client: Client, world: World) -> None:
    created = await create(coverage_client, world, [38])
    rid = created["id"]
    await call(coverage_client, "POST", f"/v1/coverage-requests/{rid}/accept", json={}, headers=world.headers("ben"))
    await world.rejected(rid, shift(world.schedule, 38), "user x is on call from ..., not the requester")  # type: ignore[attr-defined]
    _status, done = await call(coverage_client, "GET", f"/v1/coverage-requests/{rid}", headers=world.headers("amy"))
    assert done["status"] == "obsolete" and "schedule could not apply it" in done["reason"]
    assert sorted(t[0] for t in await world.told(rid) if t[1].startswith("obsolete")) == ["amy", "ben"]


async def test_lists_page_newest_first_and_filter_by_status(coverage_client: Client, world: World) -> None:
    ids = [(await create(coverage_client, world, [d], ["cat"]))["id"] for d in (40, 42, 44)]
    await call(coverage_client, "POST", f"/v1/coverage-requests/{ids[0]}/cancel", headers=world.headers("amy"))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", "status": "pending,cancelled", **({"cursor": cursor} if cursor else {})}
        status, page = await call(
            coverage_client, "GET", "/v1/coverage-requests", params=params, headers=world.headers("cat")
        )
        assert status == 200, page
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    mine = [i for i in seen if i in ids]
    assert mine == ids[::-1]
    status, pending = await call(
        coverage_client, "GET", "/v1/coverage-requests", params={"status": "cancelled"}, headers=world.headers("cat")
    )
    assert ids[0] in [r["id"] for r in pending["items"]] and ids[1] not in [r["id"] for r in pending["items"]]
    for bad in ({"cursor": "@@@"}, {"status": "lost"}, {"box": "spam"}, {"limit": "0"}):
        status, problem = await call(
            coverage_client, "GET", "/v1/coverage-requests", params=bad, headers=world.headers("cat")
        )
        assert_422(status, problem, next(iter(bad)))


async def test_my_shifts_lists_what_a_request_may_hand_over(coverage_client: Client, world: World) -> None:
    created = await create(coverage_client, world, [46])
    p = period(44, 47)
    status, mine = await call(
        coverage_client,
        "GET",
        "/v1/coverage-requests/shifts",
        params={"from": p["start"], "to": p["end"]},
        headers=world.headers("amy"),
    )
    assert status == 200, mine
    assert (
        [(m["start"][:10], m["open_request_id"]) for m in mine]
        == [
            (shift(world.schedule, 44)["start"][:10], None),  # type: ignore[attr-defined]
            (shift(world.schedule, 46)["start"][:10], created["id"]),  # type: ignore[attr-defined]
        ]
    )


async def test_deactivating_the_requester_makes_their_requests_obsolete(coverage_client: Client, world: World) -> None:
    amy2 = await world.user("amy2")
    await world.team(amy2, world.users["ben"])
    sched = uuid.uuid4()
    await world.timeline(sched, [world.users["ben"], amy2])
    payload = {"recipient_ids": [str(world.users["ben"])], **period(2, 2), "shifts": [shift(sched, 2)]}
    status, created = await call(
        coverage_client, "POST", "/v1/coverage-requests", json=payload, headers=world.headers("amy2")
    )
    assert status == 201, created
    await world.user("amy2", active=False)
    status, _ = await call(coverage_client, "GET", "/v1/coverage-requests", headers=world.headers("amy2"))
    assert status == 401
    status, done = await call(
        coverage_client, "GET", f"/v1/coverage-requests/{created['id']}", headers=world.headers("ben")
    )
    assert done["status"] == "obsolete" and "deactivated" in done["reason"]


async def test_expiry_and_reminder_timers(coverage_client: Client, world: World) -> None:
    from services.coverage.service import workflow
    from shared.db import transaction
    from shared.messages import utcnow
    from shared.timers import Timer

    created = await create(coverage_client, world, [48], ["ben", "cat"])
    rid = created["id"]
    kinds = {r["kind"] for r in await world.pool.fetch("SELECT kind FROM timers WHERE key = $1", rid)}
    assert kinds == {"coverage.expire", "coverage.remind"}
    async with transaction(world.pool) as conn:
        await workflow.remind(conn, Timer(0, "coverage.remind", rid, utcnow(), {}, 0), utcnow())
    assert sorted(t for t in await world.told(rid) if t[1].startswith("reminder")) == sorted(
        [
            ("amy", f"reminder:{world.users['amy']}"),
            ("ben", f"reminder:{world.users['ben']}"),
            ("cat", f"reminder:{world.users['cat']}"),
        ]
    )
    async with transaction(world.pool) as conn:
        await workflow.expire(conn, Timer(0, "coverage.expire", rid, utcnow(), {}, 0), utcnow())
    _status, done = await call(coverage_client, "GET", f"/v1/coverage-requests/{rid}", headers=world.headers("amy"))
    assert done["status"] == "expired"
    assert [t for t in await world.told(rid) if t[1].startswith("expired")] == [
        ("amy", f"expired:{world.users['amy']}")
    ]
    assert not await world.pool.fetch("SELECT kind FROM timers WHERE key = $1", rid)



async def test_accept_answers_the_final_state_when_schedule_answers_while_it_waits(
    coverage_client: Client, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes, "ACCEPT_WAIT_S", 5.0)
    created = await create(coverage_client, world, [50])
    rid = created["id"]

    async def schedule_answers() -> float:
        asked = await eventually_staged(world, rid)
        await world.applied(rid, world.users["ben"], asked["shifts"])
        return asyncio.get_running_loop().time()

    accept = call(coverage_client, "POST", f"/v1/coverage-requests/{rid}/accept", json={}, headers=world.headers("ben"))
    (status, done), answered_at = await asyncio.gather(accept, schedule_answers())
    assert status == 200 and done["status"] == "accepted", done
    # woken by the announcement, not by the quarter-second look
    assert asyncio.get_running_loop().time() - answered_at < 0.2


async def eventually_staged(world: World, rid: str) -> dict[str, Any]:
    for _ in range(200):
        asked = await world.staged(rid, "CoverageRequestAccepted")
        if asked:
            return asked[0]
        await asyncio.sleep(0.01)
    raise AssertionError("the acceptance was never staged")
