"""Calls as Twilio plays them: legs that ring and are answered (or not) by their scripted parties, TwiML run verb by
verb, queues, bridges and conferences, webhooks and status callbacks, and everything noted in each leg's
transcript."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import sys
import time
import traceback
import xml.etree.ElementTree as ElementTree
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urljoin

import aiohttp

from tools.fakes.twilio import webhooks
from tools.fakes.twilio.state import (
    ENDED,
    NOT_ANSWERED,
    Bridge,
    Call,
    Dequeue,
    Interrupt,
    Interrupted,
    Member,
    Participant,
    Party,
    Queue,
    Recording,
    Room,
    Step,
    TwilioState,
    new_sid,
    rfc2822,
    utcnow,
    wait_event,
)

APPLICATION_ERROR = "We are sorry, an application error has occurred. Goodbye."
DEFAULT_HOLD_MUSIC = "http://com.twilio.music.classical.s3.amazonaws.com/BusyStrings.mp3"
# Simulated durations: how fast text is spoken, how long one <Play> of a file lasts, one DTMF tone.
SPEECH_CHARS_PER_S = 15.0
PLAY_S = 10.0
TONE_S = 0.3
SPEECH_CONFIDENCE = "0.92"
# loop="0" means "until something else happens"; this many rounds stand for it.
FOREVER = 1000
MAX_QUEUE_SIZE = 1000

Mode = Literal["call", "wait", "whisper", "announce"]
# The verbs each kind of document may hold (Twilio refuses the others with an application error).
ALLOWED: dict[Mode, frozenset[str] | None] = {
    "call": None,
    "whisper": frozenset({"Say", "Play", "Pause", "Gather", "Record", "Redirect", "Hangup", "Reject"}),
    "wait": frozenset({"Say", "Play", "Pause", "Gather", "Redirect", "Hangup", "Leave"}),
    "announce": frozenset({"Say", "Play", "Pause", "Redirect"}),
}


class AppError(Exception):
    """What Twilio calls an application error: the caller hears APPLICATION_ERROR and the call ends."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Doc:
    """A TwiML document and the URL it came from (relative URLs and default actions resolve against it)."""

    root: ElementTree.Element
    url: str | None


@dataclass
class DialResult:
    status: str
    call_sid: str | None = None
    duration_s: int = 0
    bridged: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def params(self) -> dict[str, str]:
        params = {"DialCallStatus": self.status, "DialBridged": "true" if self.bridged else "false", **self.extra}
        if self.call_sid is not None:
            params["DialCallSid"] = self.call_sid
        if self.bridged or self.status == "completed":
            params["DialCallDuration"] = str(self.duration_s)
        return params


@dataclass(eq=False)
class Leg:
    """A `<Dial><Number>` leg as its dialer sees it."""

    child: Call
    whisper_url: str | None
    whisper_method: str
    ready: asyncio.Future[bool]
    bridge: asyncio.Future[Bridge | None]


def parse_twiml(text: str) -> ElementTree.Element:
    """The `<Response>` element of `text`, or AppError 12100 (Twilio's "Document parse failure")."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise AppError(12100, f"Document parse failure: {exc}") from None
    if root.tag != "Response":
        raise AppError(12100, "Document parse failure: the root element must be <Response>")
    return root


def number_attr(value: str | None, default: float) -> float:
    try:
        return float(value) if value else default
    except ValueError:
        return default


def spoken(el: ElementTree.Element) -> str:
    return " ".join(" ".join(el.itertext()).split())


class Simulator:
    """Runs every call of one simulator: the REST API and the test API start calls here; each leg's life is a task."""

    def __init__(self, state: TwilioState, http: aiohttp.ClientSession) -> None:
        self.state = state
        self.http = http
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closing = False

    # ------------------------------------------------------------------------------------------ plumbing
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and not isinstance(error, Interrupted | AppError):
            print("telephony simulator: a call task failed:", file=sys.stderr)
            traceback.print_exception(error, file=sys.stderr)

    @staticmethod
    async def discard(task: asyncio.Task[Any]) -> None:
        """Stop a helper task and swallow what it ended with."""
        task.cancel()
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()

    async def close(self) -> None:
        self.closing = True
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks))

    def real_since(self, started: float) -> float:
        """Simulated seconds since the monotonic instant `started`."""
        scale = self.state.time_scale
        return (time.monotonic() - started) / scale if scale > 0 else 0.0

    # ----------------------------------------------------------------------------------------- webhooks
    async def post(self, call: Call, url: str, method: str, extra: dict[str, str], purpose: str) -> webhooks.Answer:
        params = call.webhook_params() | extra
        return await webhooks.send(self.state, self.http, call, url, method, params, purpose)

    @staticmethod
    def document(answer: webhooks.Answer, purpose: str) -> Doc:
        root = answer.twiml()
        if root is not None:
            return Doc(root, answer.url)
        if answer.error is not None:
            raise AppError(11205, f"HTTP connection failure: {purpose} {answer.url}: {answer.error}")
        if not answer.ok:
            raise AppError(11200, f"HTTP retrieval failure: {purpose} {answer.url} answered {answer.status}")
        raise AppError(12100, f"Document parse failure: {purpose} {answer.url} did not answer TwiML")

    async def fetch_doc(self, call: Call, url: str, method: str, extra: dict[str, str], purpose: str) -> Doc:
        return self.document(await self.post(call, url, method, extra, purpose), purpose)

    async def first_document(self, call: Call) -> Doc:
        """What a call runs once it is answered: its Twiml, or what its Url answers (its fallback on failure)."""
        if call.twiml is not None:
            return Doc(parse_twiml(call.twiml), call.url)
        if call.url is None:
            raise AppError(21205, "the call has neither Url nor Twiml (ApplicationSid is not emulated)")
        purpose = "voice url" if call.direction == "inbound" else "call url"
        try:
            return await self.fetch_doc(call, call.url, call.method, {}, purpose)
        except AppError as failed:
            if not call.fallback_url:
                raise
            extra = {"ErrorCode": str(failed.code), "ErrorUrl": call.url}
            return await self.fetch_doc(call, call.fallback_url, call.fallback_method, extra, "fallback url")

    async def redirect_document(self, call: Call, redirect: Interrupt) -> Doc:
        if redirect.twiml is not None:
            return Doc(parse_twiml(redirect.twiml), call.url)
        assert redirect.url is not None
        return await self.fetch_doc(call, redirect.url, redirect.method, {}, "redirect (REST)")

    async def progress(self, call: Call, event: str, status: str | None = None) -> None:
        """Post the call's status callback for `event` if it asked for it (`completed` always goes)."""
        if not call.status_callback or self.closing:
            return
        if event != "completed" and event not in call.status_callback_events:
            return
        params = call.webhook_params() | {
            "CallStatus": status or call.status,
            "Timestamp": rfc2822(utcnow()) or "",
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(call.callback_sequence),
        }
        call.callback_sequence += 1
        if event == "completed":
            params["CallDuration"] = str(call.duration_s)
        answer = await webhooks.send(
            self.state, self.http, call, call.status_callback, call.status_callback_method, params,
            f"status callback ({event})",
        )
        if event == "completed":
            call.final_callback = {"url": answer.url, "status": answer.status, "body": answer.body}

    async def application_error(self, call: Call, error: AppError) -> None:
        call.note("application-error", f"application error {error.code}: {error}", code=error.code)
        if call.status in NOT_ANSWERED and not call.finished:
            self.answer(call, by="Twilio (to play the error)")
        call.note("heard", APPLICATION_ERROR, language="en-US", application_error=True)

    # ---------------------------------------------------------------------------------------- new calls
    def new_call(self, **fields: Any) -> Call:
        call = Call(sid=new_sid("CA"), account_sid=self.state.account_sid, clock=self.state.clock, **fields)
        self.state.calls[call.sid] = call
        return call

    def place(self, call: Call) -> None:
        """Start an outbound call created through the REST API."""
        self.spawn(self._outbound(call))

    def incoming(self, from_: str, to: str, caller: Party | None) -> Call | None:
        """A call from `from_` to the account's number `to`, the caller acting as scripted (None: no such number)."""
        number = self.state.number(to)
        if number is None:
            return None
        call = self.new_call(
            direction="inbound",
            to=to,
            from_=from_,
            status="ringing",
            url=number.voice_url,
            method=number.voice_method,
            fallback_url=number.voice_fallback_url,
            fallback_method=number.voice_fallback_method,
            status_callback=number.status_callback,
            status_callback_method=number.status_callback_method,
            timeout_s=None,
            phone_number_sid=number.sid if number is not self.state.default_number else None,
            party=caller or self.state.parties.get(from_) or Party(),
        )
        self.spawn(self._inbound(call))
        return call

    # ----------------------------------------------------------------------------------------- lifecycles
    async def _outbound(self, call: Call) -> None:
        try:
            if await self.ring(call):
                await self.answered(call)
                await self.run_call(call, lambda: self.first_document(call))
        except Interrupted:
            pass
        finally:
            await self.finish(call)

    async def _inbound(self, call: Call) -> None:
        call.note("ringing", f"{call.from_} calls {call.to}")
        self.start_party_clock(call)
        try:
            await self.run_call(call, lambda: self.first_document(call))
        except Interrupted:
            pass
        finally:
            await self.finish(call)

    async def ring(self, call: Call) -> bool:
        """Ring the callee of an outbound leg as their script says; True once they answer. A leg nobody scripted
        waits for /press (a REST call: as long as it takes, still queued; a <Dial> leg: up to its timeout)."""
        party = call.party
        if party is None and call.direction == "outbound-api":
            call.note("queued", f"calls {call.to}: nobody scripted for this number; waiting for /press or /complete")
            await call.race([call.manual_answer.wait()])
            await self.progress(call, "initiated", "initiated")
            call.status = "ringing"
            await self.progress(call, "ringing")
            return True
        await self.progress(call, "initiated", "initiated")
        if party is not None and party.answer == "failed":
            call.status = "failed"
            call.note("failed", "the call failed (the number cannot be reached)")
            return False
        call.status = "ringing"
        call.note("ringing", "rings", timeout_s=call.timeout_s)
        await self.progress(call, "ringing")
        timeout = call.timeout_s
        in_time = party is not None and (timeout is None or party.ring_s <= timeout)
        picks_up = party is not None and party.answer in ("answer", "busy") and in_time
        wait = party.ring_s if picks_up and party is not None else timeout
        if await call.race([call.manual_answer.wait()], wait):
            return True
        if picks_up and party is not None and party.answer == "answer":
            return True
        if picks_up:
            call.status = "busy"
            call.note("declined", "declined the call (busy)")
        else:
            call.status = "no-answer"
            call.note("no-answer", f"did not answer within {timeout:g} s")
        return False

    def answer(self, call: Call, by: str) -> None:
        call.status = "in-progress"
        call.start_time = utcnow()
        call.note("answered", f"{by} answered" if by else "answered")

    async def answered(self, call: Call) -> None:
        self.answer(call, by="")
        await self.progress(call, "answered", "in-progress")
        self.start_party_clock(call)

    def start_party_clock(self, call: Call) -> None:
        if call.party is not None and call.party.hang_up_after_s is not None:
            self.spawn(self._hang_up_later(call, call.party.hang_up_after_s))

    async def _hang_up_later(self, call: Call, sim_s: float) -> None:
        if not await wait_event(call.ended, self.state.clock.real(sim_s)):
            self.party_hangs_up(call)

    def party_hangs_up(self, call: Call) -> None:
        if call.interrupt(Interrupt("hangup", by=call.role)):
            call.note("hung-up", f"the {call.role} hung up", by=call.role)

    def app_hangs_up(self, call: Call, why: str) -> None:
        if call.interrupt(Interrupt("hangup", by="application")):
            call.note("hung-up", why, by="application")

    async def run_call(self, call: Call, load: Callable[[], Awaitable[Doc]]) -> None:
        """Run TwiML on `call` until it ends, then hang up as Twilio does."""
        call.executing = True
        try:
            outcome = await Runner(self, call, "call").run(load)
        finally:
            call.executing = False
        if outcome == "end":
            self.app_hangs_up(call, "no more TwiML: Twilio hung up")
        elif outcome == "hangup":
            self.app_hangs_up(call, "the application hung up")
        elif outcome == "error":
            self.app_hangs_up(call, "Twilio hung up after the application error")

    async def finish(self, call: Call) -> None:
        if call.finished:
            return
        if call.status not in ENDED:
            call.status = "completed" if call.start_time is not None else "failed"
        call.end_time = call.end_time or utcnow()
        answered = f" after {call.duration_s} s" if call.start_time is not None else ""
        call.note("ended", f"the call ended: {call.status}{answered}", status=call.status, duration=call.duration_s)
        try:
            await self.progress(call, "completed")
        finally:
            call.ended.set()

    # ------------------------------------------------------------------------------ REST and test actions
    def hang_up_by_api(self, call: Call, status: str) -> None:
        """`calls(sid).update(status=...)`: canceled ends a queued or ringing call; completed ends any live one."""
        if call.finished or (call.interruption is not None and call.interruption.kind == "hangup"):
            return
        if call.status in NOT_ANSWERED and status in ("canceled", "completed"):
            call.interrupt(Interrupt("hangup", by="api", status="canceled"))
            call.note("canceled", "canceled through the REST API", by="api")
        elif status == "completed" and call.status == "in-progress":
            call.interrupt(Interrupt("hangup", by="api"))
            call.note("hung-up", "hung up through the REST API", by="api")

    def redirect_by_api(self, call: Call, url: str | None, method: str, twiml: str | None) -> None:
        """`calls(sid).update(url=... | twiml=...)`: a live call runs the new TwiML now; one not yet answered
        runs it when it is."""
        if call.status == "in-progress" or call.executing:
            call.interrupt(Interrupt("redirect", by="api", url=url, method=method, twiml=twiml))
        else:
            if url is not None:
                call.url, call.method, call.twiml = url, method, None
            else:
                call.twiml = twiml

    async def press(self, call: Call, digits: str, timeout_s: float) -> dict[str, Any] | None:
        """The callee picks up (if it rings unscripted) and presses `digits` at the next Gather: what that Gather's
        action answered, or None if the call ended without one taking them."""
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        call.gather_waiters.append(waiter)
        call.give_input(Step.press(digits))
        call.manual_answer.set()
        ended: asyncio.Future[Any] = asyncio.ensure_future(call.ended.wait())
        try:
            await asyncio.wait([waiter, ended], timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not ended.done():
                ended.cancel()
        if waiter.done():
            return waiter.result()
        waiter.cancel()
        with contextlib.suppress(ValueError):
            call.gather_waiters.remove(waiter)
        return None

    async def complete(self, call: Call, status: str, timeout_s: float) -> None:
        """The far end ends the call: one not yet answered ends with `status`, an answered one completes."""
        if call.status in NOT_ANSWERED:
            if call.interrupt(Interrupt("hangup", by=call.role, status=status)):
                call.note(status if status in ENDED else "hung-up", f"the call ended as {status}", by=call.role)
        else:
            self.party_hangs_up(call)
        await wait_event(call.ended, timeout_s)

    # -------------------------------------------------------------------------------------- <Dial> legs
    async def child_leg(self, leg: Leg) -> None:
        child = leg.child
        bridge: Bridge | None = None
        try:
            try:
                if not await self.ring(child):
                    leg.ready.set_result(False)
                    return
                await self.answered(child)
                if leg.whisper_url is not None:
                    url, method = leg.whisper_url, leg.whisper_method
                    whisper = functools.partial(self.fetch_doc, child, url, method, {}, "number url")
                    outcome = await Runner(self, child, "whisper").run(whisper)
                    if outcome != "end":
                        self.app_hangs_up(child, "hung up before being connected (the number's TwiML ended the call)")
                        leg.ready.set_result(False)
                        return
                leg.ready.set_result(True)
                await child.race([leg.bridge])
                bridge = leg.bridge.result()
                if bridge is None:
                    self.app_hangs_up(child, "another leg answered first: Twilio hung up")
                    return
                await child.race([bridge.ended.wait()])
                other = next(c for c in bridge.calls if c is not child)
                child.note("unbridged", f"{other.far_end} left the call", with_sid=other.sid)
                self.app_hangs_up(child, "Twilio hung up (the other party left)")
            except Interrupted as stop:
                if not leg.ready.done():
                    leg.ready.set_result(False)
                if bridge is not None:
                    bridge.end(child)
                if stop.interrupt.kind != "redirect":
                    return
                # Redirected through the REST API: the leg leaves the <Dial> and runs its new TwiML on its own.
                redirect = child.clear_redirect()
                await self.run_call(child, lambda: self.redirect_document(child, redirect))
        except Interrupted:
            pass
        finally:
            await self.finish(child)

    def release(self, leg: Leg) -> None:
        """Let a leg go that is not (or no longer) to be connected."""
        if not leg.bridge.done():
            leg.bridge.set_result(None)
        child = leg.child
        if child.status in NOT_ANSWERED:
            if child.interrupt(Interrupt("hangup", by="twilio", status="canceled")):
                child.note("canceled", "Twilio stopped ringing this leg", by="twilio")
        elif not leg.ready.done() and child.interrupt(Interrupt("hangup", by="twilio")):
            child.note("hung-up", "Twilio hung up (the dial is over)", by="twilio")

    # ---------------------------------------------------------------------------------- bridges, queues
    def connect(self, calls: list[Call], via: str) -> Bridge:
        bridge = Bridge(calls, via)
        for a, b in itertools.permutations(calls, 2):
            self.link(a, b, via)
        return bridge

    def link(self, a: Call, b: Call, via: str) -> None:
        if not a.bridged_with and a.party is not None and a.party.talk_s is not None:
            self.spawn(self._hang_up_later(a, a.party.talk_s))
        if b.sid not in a.bridged_with:
            a.bridged_with.append(b.sid)
        a.note("bridged", f"connected with {b.far_end}", with_sid=b.sid, with_number=b.far_end, via=via)

    def queue(self, name: str) -> Queue:
        if name not in self.state.queues:
            self.state.queues[name] = Queue(new_sid("QU"), name)
        return self.state.queues[name]

    def room(self, name: str) -> Room:
        if name not in self.state.rooms or self.state.rooms[name].ended.is_set():
            self.state.rooms[name] = Room(new_sid("CF"), name)
        return self.state.rooms[name]

    def join(self, room: Room, me: Participant) -> None:
        present = list(room.participants)
        room.participants.append(me)
        me.call.note("conference", f"joined conference {room.name!r}", conference=room.name)
        via = f"conference {room.name}"
        if room.started.is_set():
            for other in present:
                self.link(me.call, other.call, via)
                self.link(other.call, me.call, via)
        elif me.starts:
            room.started.set()
            for a, b in itertools.permutations(room.participants, 2):
                self.link(a.call, b.call, via)

    def leave(self, room: Room, me: Participant) -> None:
        if me not in room.participants:
            return
        room.participants.remove(me)
        me.call.note("conference-left", f"left conference {room.name!r}", conference=room.name)
        if me.ends or not room.participants:
            room.ended.set()
            if self.state.rooms.get(room.name) is room:
                del self.state.rooms[room.name]

    def new_recording(self, call: Call, duration_s: float) -> Recording:
        recording = Recording(
            new_sid("RE"), call.account_sid, call.sid, round(duration_s), utcnow(), self.state.base_url
        )
        self.state.recordings[recording.sid] = recording
        call.recording_sids.append(recording.sid)
        return recording


class Runner:
    """Runs TwiML documents on one call. `mode`: the call's own flow, a queue's wait music, a dialed number's
    whisper before it is connected, or what a dequeued caller hears before the connection."""

    def __init__(self, sim: Simulator, call: Call, mode: Mode) -> None:
        self.sim, self.call, self.mode = sim, call, mode
        self.dial_partial: DialResult | None = None

    async def run(self, load: Callable[[], Awaitable[Doc]]) -> str:
        """Run documents until one ends ("end"), hangs up ("hangup"), rejects ("reject"), leaves a queue ("leave") or
        fails ("error": an application error, heard by the party).
        Redirects through the REST API are followed in the call's own flow; other modes let them pass up."""
        call = self.call
        try:
            doc = await load()
            while True:
                try:
                    call.check()
                    outcome = await self.document(doc)
                    if isinstance(outcome, Doc):
                        doc = outcome
                        continue
                    return outcome
                except Interrupted as stop:
                    if stop.interrupt.kind != "redirect" or self.mode != "call":
                        raise
                    redirect = call.clear_redirect()
                    target = redirect.url or "inline TwiML"
                    call.note("redirected", f"redirected through the REST API to {target}", url=redirect.url)
                    doc = await self.sim.redirect_document(call, redirect)
        except AppError as error:
            await self.sim.application_error(call, error)
            return "error"

    async def document(self, doc: Doc) -> Doc | str:
        for el in list(doc.root):
            self.call.check()
            result = await self.verb(el, doc)
            if result is not None:
                return result
        return "end"

    async def verb(self, el: ElementTree.Element, doc: Doc) -> Doc | str | None:
        handler = {
            "Say": self.say,
            "Play": self.play,
            "Pause": self.pause,
            "Gather": self.gather,
            "Record": self.record,
            "Redirect": self.redirect,
            "Hangup": self.hangup,
            "Reject": self.reject,
            "Enqueue": self.enqueue,
            "Leave": self.leave,
            "Dial": self.dial,
        }.get(el.tag)
        allowed = ALLOWED[self.mode]
        if allowed is not None and el.tag not in allowed:
            raise AppError(13000, f"<{el.tag}> is not allowed in {self.mode} TwiML")
        if handler is None:
            self.call.note("skipped", f"<{el.tag}> is not emulated: skipped", verb=el.tag)
            return None
        if self.call.direction == "inbound" and self.call.status == "ringing" and el.tag != "Reject":
            self.sim.answer(self.call, by="the application")
        result: Doc | str | None = await handler(el, doc)
        return result

    def url(self, value: str | None, doc: Doc) -> str | None:
        if value is None or not value.strip():
            return None
        return urljoin(doc.url or "", value.strip())

    # ------------------------------------------------------------------------------------- simple verbs
    def loops(self, el: ElementTree.Element, stop: asyncio.Event | None) -> int:
        """How often a Say or Play runs: its `loop` ("0": until something else happens; inside a Gather, once when
        the party has scripted input waiting, which they give after the prompt)."""
        loops = int(number_attr(el.get("loop"), 1))
        if loops:
            return loops
        party, call = self.call.party, self.call
        scripted = party is not None and any(step.kind != "silence" for step in party.steps[call.step_index:])
        return 1 if stop is not None and scripted else FOREVER

    async def say(self, el: ElementTree.Element, doc: Doc, stop: asyncio.Event | None = None) -> None:
        text = spoken(el)
        loops = self.loops(el, stop)
        language = el.get("language") or "en-US"
        extra = {"voice": el.get("voice")} if el.get("voice") else {}
        for _ in range(loops):
            self.call.note("heard", text, language=language, **extra)
            if await self.call.sleep(max(len(text) / SPEECH_CHARS_PER_S, 0.1), stop):
                return

    async def play(self, el: ElementTree.Element, doc: Doc, stop: asyncio.Event | None = None) -> None:
        digits = el.get("digits")
        if digits:
            self.call.note("played", f"played the keys {digits}", digits=digits)
            await self.call.sleep(len(digits) * TONE_S, stop)
            return
        url = self.url(spoken(el), doc) or ""
        for _ in range(self.loops(el, stop)):
            self.call.note("played", url, url=url)
            if await self.call.sleep(PLAY_S, stop):
                return

    async def pause(self, el: ElementTree.Element, doc: Doc, stop: asyncio.Event | None = None) -> None:
        length = number_attr(el.get("length"), 1.0)
        self.call.note("paused", f"{length:g} s of silence", length=length)
        await self.call.sleep(length, stop)

    async def redirect(self, el: ElementTree.Element, doc: Doc) -> Doc:
        url = self.url(spoken(el), doc)
        if url is None:
            raise AppError(12100, "<Redirect> without a URL")
        self.call.note("redirected", f"<Redirect> to {url}", url=url)
        return await self.sim.fetch_doc(self.call, url, (el.get("method") or "POST").upper(), {}, "redirect")

    async def hangup(self, el: ElementTree.Element, doc: Doc) -> str:
        return "hangup"

    async def reject(self, el: ElementTree.Element, doc: Doc) -> str:
        call = self.call
        reason = el.get("reason") or "rejected"
        if call.status not in NOT_ANSWERED:
            return "hangup"
        status = "busy" if reason == "busy" else "no-answer"
        if call.interrupt(Interrupt("hangup", by="application", status=status)):
            call.note("rejected", f"the application rejected the call ({reason})", reason=reason)
        return "reject"

    async def leave(self, el: ElementTree.Element, doc: Doc) -> str | None:
        if self.mode == "wait":
            return "leave"
        self.call.note("skipped", "<Leave> outside a queue: ignored", verb="Leave")
        return None

    # ------------------------------------------------------------------------------------------- input
    async def gather(self, el: ElementTree.Element, doc: Doc) -> Doc | None:
        call = self.call
        kinds = set((el.get("input") or "dtmf").split())
        timeout = number_attr(el.get("timeout"), 5.0)
        num_digits = int(number_attr(el.get("numDigits"), 0))
        finish = el.get("finishOnKey", "#")
        action = self.url(el.get("action"), doc) or doc.url
        method = (el.get("method") or "POST").upper()
        hints = el.get("hints")
        call.note(
            "gathering",
            f"listens for {' or '.join(sorted(kinds))}" + (f" (hints: {hints})" if hints else ""),
            input=sorted(kinds), num_digits=num_digits or None, timeout=timeout, hints=hints, action=action,
        )
        for child in el:
            prompt = {"Say": self.say, "Play": self.play, "Pause": self.pause}.get(child.tag)
            if prompt is None:
                call.note("skipped", f"<{child.tag}> inside <Gather> is not emulated: skipped", verb=child.tag)
                continue
            await prompt(child, doc, stop=call.input_ready)
            if call.input_ready.is_set():
                break
        step = await self.next_input(timeout)
        params: dict[str, str] | None = None
        digits = ""
        if step is None or step.kind == "silence":
            call.note("no-input", f"no input within {timeout:g} s")
        elif step.kind == "hangup":
            self.sim.party_hangs_up(call)
            call.check()
        elif step.kind == "press" and "dtmf" not in kinds:
            not_taken = "(not taken: this Gather listens for speech)"
            call.note("pressed", f"pressed {step.value} {not_taken}", digits=step.value, taken=False)
        elif step.kind == "press":
            digits, finished = self.digits(step.value, num_digits, finish)
            call.note("pressed", f"pressed {digits}" if digits else "pressed nothing", digits=digits, taken=True)
            params = {"Digits": digits, "FinishedOnKey": finished, "msg": "Gather End"}
        elif "speech" not in kinds:
            not_taken = "(not taken: this Gather takes keys only)"
            call.note("said", f"said {step.value!r} {not_taken}", speech=step.value, taken=False)
        else:
            call.note("said", f"said {step.value!r}", speech=step.value, taken=True)
            params = {"SpeechResult": step.value, "Confidence": SPEECH_CONFIDENCE}
        if params is None and el.get("actionOnEmptyResult") != "true":
            return None
        if action is None:
            raise AppError(11100, "the <Gather> has no action and its document no URL to post the input to")
        answer = await self.sim.post(call, action, method, params or {}, "gather action")
        if params and "Digits" in params:
            call.digits_pressed.append(digits)
        webhook = {"url": action, "status": answer.status, "body": answer.body}
        for waiter in call.gather_waiters:
            if not waiter.done():
                waiter.set_result({"sid": call.sid, "digits": digits, "webhook": webhook})
        call.gather_waiters.clear()
        call.check()
        return self.sim.document(answer, "gather action")

    async def next_input(self, timeout_s: float) -> Step | None:
        """The party's next input: live input first, then their script; they may still press or speak live within
        the Gather's timeout."""
        call = self.call
        live = call.take_input()
        if live is not None:
            return live
        scripted = call.next_scripted_step()
        if scripted is not None and scripted.kind != "silence":
            return scripted
        if await call.sleep(timeout_s, stop=call.input_ready):
            return call.take_input()
        return scripted

    @staticmethod
    def digits(pressed: str, num_digits: int, finish: str) -> tuple[str, str]:
        for i, key in enumerate(pressed):
            if finish and key in finish:
                return pressed[:i], key
            if num_digits and i + 1 >= num_digits:
                return pressed[: i + 1], ""
        return pressed, ""

    async def record(self, el: ElementTree.Element, doc: Doc) -> Doc | None:
        call = self.call
        action = self.url(el.get("action"), doc) or doc.url
        method = (el.get("method") or "POST").upper()
        timeout = number_attr(el.get("timeout"), 5.0)
        max_length = number_attr(el.get("maxLength"), 3600.0) or 3600.0
        finish = el.get("finishOnKey", "1234567890*#")
        if (el.get("playBeep") or "true").lower() != "false":
            call.note("heard", "(beep)", beep=True)
        speaks = call.party.voicemail_s if call.party is not None else None
        call.note("recording", f"recording (at most {max_length:g} s)", max_length=max_length)
        if not speaks:
            await call.sleep(timeout)
            call.note("recorded", f"nothing was recorded ({timeout:g} s of silence)", duration=0)
            return None
        length = min(speaks, max_length)
        started = time.monotonic()
        try:
            await call.sleep(length)
        except Interrupted as stop:
            if stop.interrupt.kind == "hangup":
                await self.recorded(el, doc, action, method, self.sim.real_since(started), "hangup")
            raise
        party = call.party
        if party is not None and party.hang_up_after_voicemail:
            self.sim.party_hangs_up(call)
            ended_with = "hangup"
        elif length >= max_length:
            ended_with = ""
        else:
            ended_with = "#" if "#" in finish else finish[:1]
            if ended_with:
                call.note("pressed", f"pressed {ended_with} to end the recording", digits=ended_with, taken=True)
        answer = await self.recorded(el, doc, action, method, length, ended_with)
        call.check()
        return None if answer is None else self.sim.document(answer, "record action")

    async def recorded(
        self, el: ElementTree.Element, doc: Doc, action: str | None, method: str, seconds: float, ended_with: str
    ) -> webhooks.Answer | None:
        call = self.call
        recording = self.sim.new_recording(call, seconds)
        call.note(
            "recorded", f"left a {recording.duration_s} s recording", recording_sid=recording.sid,
            recording_url=recording.url, duration=recording.duration_s,
        )
        found = {
            "RecordingUrl": recording.url,
            "RecordingSid": recording.sid,
            "RecordingDuration": str(recording.duration_s),
        }
        answer = None
        if action is not None:
            params = found | ({"Digits": ended_with} if ended_with else {})
            answer = await self.sim.post(call, action, method, params, "record action")
        callback = self.url(el.get("recordingStatusCallback"), doc)
        if callback is not None:
            status = found | {
                "RecordingStatus": "completed",
                "RecordingChannels": "1",
                "RecordingStartTime": rfc2822(recording.started) or "",
                "RecordingSource": "RecordVerb",
                "ErrorCode": "0",
                "AccountSid": call.account_sid,
                "CallSid": call.sid,
            }
            await webhooks.send(
                self.sim.state, self.sim.http, call, callback,
                (el.get("recordingStatusCallbackMethod") or "POST").upper(), status, "recording status callback",
            )
        return answer

    # --------------------------------------------------------------------------------------------- queues
    async def enqueue(self, el: ElementTree.Element, doc: Doc) -> Doc | str | None:
        call = self.call
        name = spoken(el)
        action = self.url(el.get("action"), doc)
        method = (el.get("method") or "POST").upper()
        wait_url = self.url(el.get("waitUrl"), doc)
        wait_method = (el.get("waitUrlMethod") or "POST").upper()
        queue = self.sim.queue(name)
        member = Member(call)
        queue.members.append(member)
        queue.arrived.set()
        call.note("enqueued", f"waits in queue {name!r} (position {len(queue.members)})", queue=name,
                  position=len(queue.members))
        hold = self.sim.spawn(self.hold(member, queue, wait_url, wait_method))
        bridge: Bridge | None = None
        try:
            while True:
                done = await call.race([member.taken, hold])
                if hold in done:
                    outcome: str = hold.result()
                    self.out_of_queue(queue, member, "left the queue (<Leave>)" if outcome == "leave" else "")
                    if outcome != "leave":  # <Hangup> in the wait music, or an application error
                        await self.queue_action(action, method, queue, member, "hangup", ignore=True)
                        return outcome
                    return await self.queue_action(action, method, queue, member, "leave")
                taken = member.taken.result()
                if taken.dialer.finished or taken.dialer.interruption is not None:
                    member.taken = asyncio.get_running_loop().create_future()  # the agent is gone: wait on
                    continue
                await self.sim.discard(hold)
                self.out_of_queue(queue, member, f"taken from queue {name!r} by {taken.dialer.far_end}")
                if taken.url is not None:
                    params = {
                        "QueueSid": queue.sid,
                        "QueueTime": str(int(self.sim.real_since(member.entered))),
                        "DequeingCallSid": taken.dialer.sid,
                    }
                    announce = functools.partial(self.sim.fetch_doc, call, taken.url, taken.method, params, "queue url")
                    outcome = await Runner(self.sim, call, "announce").run(announce)
                    if outcome != "end":
                        member.bridged.set_result(None)
                        await self.queue_action(action, method, queue, member, "hangup", ignore=True)
                        return outcome
                bridge = self.sim.connect([taken.dialer, call], via=f"queue {name}")
                member.bridged.set_result(bridge)
                await call.race([bridge.ended.wait()])
                call.note("unbridged", f"{taken.dialer.far_end} left the call", with_sid=taken.dialer.sid)
                return await self.queue_action(action, method, queue, member, "bridged")
        except Interrupted as stop:
            await self.sim.discard(hold)
            self.out_of_queue(queue, member, "")
            if bridge is not None:
                bridge.end(call)
                result = "bridged"
            else:
                if not member.bridged.done():
                    member.bridged.set_result(None)
                result = "hangup" if stop.interrupt.kind == "hangup" else "redirected"
            await self.queue_action(action, method, queue, member, result, ignore=True)
            raise

    def out_of_queue(self, queue: Queue, member: Member, why: str) -> None:
        if member in queue.members:
            queue.members.remove(member)
            queue.waits.append(self.sim.real_since(member.entered))
            if why:
                member.call.note("dequeued", why, queue=queue.name)

    async def queue_action(
        self, action: str | None, method: str, queue: Queue, member: Member, result: str, ignore: bool = False
    ) -> Doc | None:
        self.call.note("left-queue", f"left queue {queue.name!r}: {result}", queue=queue.name, result=result)
        if action is None:
            return None
        params = {
            "QueueResult": result,
            "QueueSid": queue.sid,
            "QueueTime": str(int(self.sim.real_since(member.entered))),
        }
        answer = await self.sim.post(self.call, action, method, params, "enqueue action")
        if ignore:
            return None
        self.call.check()
        return self.sim.document(answer, "enqueue action")

    async def hold(self, member: Member, queue: Queue, wait_url: str | None, method: str) -> str:
        """What a caller hears while waiting: the waitUrl's TwiML, fetched again each time it ends."""
        call = self.call
        if wait_url is None:
            call.note("played", DEFAULT_HOLD_MUSIC, url=DEFAULT_HOLD_MUSIC, hold_music=True)
            await call.race([])
        assert wait_url is not None
        while True:
            started = time.monotonic()
            waits = queue.waits or [0.0]
            params = {
                "QueueSid": queue.sid,
                "QueuePosition": str(queue.members.index(member) + 1 if member in queue.members else 1),
                "QueueTime": str(int(self.sim.real_since(member.entered))),
                "AvgQueueTime": str(int(sum(waits) / len(waits))),
                "CurrentQueueSize": str(len(queue.members)),
                "MaxQueueSize": str(MAX_QUEUE_SIZE),
            }
            wait = functools.partial(self.sim.fetch_doc, call, wait_url, method, params, "wait url")
            outcome = await Runner(self.sim, call, "wait").run(wait)
            if outcome in ("leave", "hangup", "error"):
                return outcome
            if self.sim.real_since(started) < 1.0:  # a wait document that takes no time is not fetched in a busy loop
                await call.sleep(1.0)

    # ------------------------------------------------------------------------------------------ <Dial>
    async def dial(self, el: ElementTree.Element, doc: Doc) -> Doc | None:
        call = self.call
        action = self.url(el.get("action"), doc)
        method = (el.get("method") or "POST").upper()
        timeout = number_attr(el.get("timeout"), 30.0)
        time_limit = number_attr(el.get("timeLimit"), 14400.0)
        caller_id = el.get("callerId") or call.from_
        nouns = [c for c in el if c.tag in ("Number", "Queue", "Conference", "Client", "Sip", "Application")]
        if not nouns and spoken(el):
            nouns = [ElementTree.Element("Number")]
            nouns[0].text = spoken(el)
        self.dial_partial = None
        try:
            if any(n.tag == "Conference" for n in nouns):
                result = await self.dial_conference(next(n for n in nouns if n.tag == "Conference"), doc, time_limit)
            elif any(n.tag == "Queue" for n in nouns):
                result = await self.dial_queue(next(n for n in nouns if n.tag == "Queue"), doc, timeout, time_limit)
            else:
                for other in (n for n in nouns if n.tag != "Number"):
                    call.note("skipped", f"<{other.tag}> in <Dial> is not emulated: skipped", verb=other.tag)
                numbers = [n for n in nouns if n.tag == "Number"]
                if not numbers:
                    raise AppError(13201, "<Dial> without a number, queue or conference")
                result = await self.dial_numbers(numbers, doc, timeout, time_limit, caller_id)
        except Interrupted:
            partial = self.dial_partial or DialResult("canceled")
            if action is not None:
                await self.sim.post(call, action, method, partial.params(), "dial action")
            raise
        call.note("dial-ended", f"the dial ended: {result.status}", status=result.status, bridged=result.bridged)
        if action is None:
            return None
        answer = await self.sim.post(call, action, method, result.params(), "dial action")
        call.check()
        return self.sim.document(answer, "dial action")

    async def dial_numbers(
        self, numbers: list[ElementTree.Element], doc: Doc, ring_s: float, time_limit: float, caller_id: str
    ) -> DialResult:
        call, sim = self.call, self.sim
        legs: list[Leg] = []
        for noun in numbers:
            number = spoken(noun)
            events = set((noun.get("statusCallbackEvent") or "completed").replace(",", " ").split())
            child = sim.new_call(
                direction="outbound-dial",
                to=number,
                from_=caller_id,
                status="queued",
                parent_sid=call.sid,
                timeout_s=ring_s,
                status_callback=self.url(noun.get("statusCallback"), doc),
                status_callback_method=(noun.get("statusCallbackMethod") or "POST").upper(),
                status_callback_events=frozenset(events),
                party=sim.state.parties.get(number),
            )
            loop = asyncio.get_running_loop()
            leg = Leg(child, self.url(noun.get("url"), doc), (noun.get("method") or "POST").upper(),
                      loop.create_future(), loop.create_future())
            call.note("dialed", f"dials {number}", number=number, leg_sid=child.sid)
            legs.append(leg)
            sim.spawn(sim.child_leg(leg))
        winner: Leg | None = None
        bridge: Bridge | None = None
        last = legs[-1]
        try:
            pending: dict[asyncio.Future[Any], Leg] = {leg.ready: leg for leg in legs}
            while pending and winner is None:
                for future in await call.race(list(pending)):
                    last = pending.pop(future)
                    if future.result() and winner is None:
                        winner = last
            for leg in legs:
                if leg is not winner:
                    sim.release(leg)
            if winner is None:
                status = last.child.status
                return DialResult(status if status in ENDED else "no-answer", last.child.sid)
            bridge = sim.connect([call, winner.child], via="dial")
            winner.bridge.set_result(bridge)
            if not await call.race([bridge.ended.wait()], time_limit):
                call.note("time-limit", f"the call reached its time limit of {time_limit:g} s")
                bridge.end(call)
            else:
                call.note("unbridged", f"{winner.child.to} left the call", with_sid=winner.child.sid)
            return DialResult("completed", winner.child.sid, int(sim.real_since(bridge.started)), True)
        except Interrupted:
            for leg in legs:
                sim.release(leg)
            if bridge is not None:
                bridge.end(call)
            answered = winner is not None and bridge is not None
            self.dial_partial = DialResult(
                "completed" if answered else "canceled",
                winner.child.sid if winner is not None else None,
                int(sim.real_since(bridge.started)) if bridge is not None else 0,
                answered,
            )
            raise

    async def dial_queue(self, noun: ElementTree.Element, doc: Doc, wait_s: float, time_limit: float) -> DialResult:
        call, sim = self.call, self.sim
        name = spoken(noun)
        queue = sim.state.queues.get(name)
        if queue is None:
            call.note("dialed", f"dials queue {name!r}, which does not exist", queue=name)
            return DialResult("failed")
        call.note("dialed", f"dials queue {name!r}", queue=name)
        extra = {"QueueSid": queue.sid}
        deadline = time.monotonic() + sim.state.clock.real(wait_s)
        member: Member | None = None
        bridge: Bridge | None = None
        try:
            while (member := queue.first_waiting()) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    call.note("no-answer", f"nobody waited in queue {name!r} within {wait_s:g} s", queue=name)
                    return DialResult("no-answer", extra=extra)
                queue.arrived.clear()
                await call.race([queue.arrived.wait()], remaining / sim.state.time_scale if sim.state.time_scale else 0)
            method = (noun.get("method") or "POST").upper()
            member.taken.set_result(Dequeue(call, self.url(noun.get("url"), doc), method))
            await call.race([member.bridged])
            bridge = member.bridged.result()
            if bridge is None:
                return DialResult("canceled", member.call.sid, extra=extra)
            if not await call.race([bridge.ended.wait()], time_limit):
                call.note("time-limit", f"the call reached its time limit of {time_limit:g} s")
                bridge.end(call)
            else:
                call.note("unbridged", f"{member.call.far_end} left the call", with_sid=member.call.sid)
            return DialResult("completed", member.call.sid, int(sim.real_since(bridge.started)), True, extra)
        except Interrupted:
            if bridge is None and member is not None and member.bridged.done():
                bridge = member.bridged.result()
            if bridge is not None:
                bridge.end(call)
            self.dial_partial = DialResult(
                "completed" if bridge is not None else "canceled",
                member.call.sid if member is not None else None,
                int(sim.real_since(bridge.started)) if bridge is not None else 0,
                bridge is not None,
                extra,
            )
            raise

    async def dial_conference(self, noun: ElementTree.Element, doc: Doc, time_limit: float) -> DialResult:
        call, sim = self.call, self.sim
        room = sim.room(spoken(noun))
        me = Participant(
            call,
            starts=(noun.get("startConferenceOnEnter") or "true").lower() != "false",
            ends=(noun.get("endConferenceOnExit") or "false").lower() == "true",
        )
        extra = {"ConferenceSid": room.sid}
        joined = time.monotonic()
        sim.join(room, me)
        try:
            if not room.started.is_set():
                hold = sim.spawn(self.conference_wait(noun, doc))
                try:
                    await call.race([room.started.wait(), room.ended.wait()])
                finally:
                    await sim.discard(hold)
            if not await call.race([room.ended.wait()], time_limit):
                call.note("time-limit", f"the call reached its time limit of {time_limit:g} s")
        except Interrupted:
            sim.leave(room, me)
            self.dial_partial = DialResult(
                "completed", None, int(sim.real_since(joined)), bool(call.bridged_with), extra
            )
            raise
        sim.leave(room, me)
        return DialResult("completed", None, int(sim.real_since(joined)), bool(call.bridged_with), extra)

    async def conference_wait(self, noun: ElementTree.Element, doc: Doc) -> None:
        call = self.call
        wait_url = noun.get("waitUrl")
        if wait_url is None:
            call.note("played", DEFAULT_HOLD_MUSIC, url=DEFAULT_HOLD_MUSIC, hold_music=True)
        url = self.url(wait_url, doc)
        if url is None:
            await call.race([])
        assert url is not None
        method = (noun.get("waitMethod") or "POST").upper()
        while True:
            started = time.monotonic()
            wait = functools.partial(self.sim.fetch_doc, call, url, method, {}, "wait url")
            outcome = await Runner(self.sim, call, "wait").run(wait)
            if outcome in ("hangup", "error"):
                self.sim.app_hangs_up(call, "the application hung up" if outcome == "hangup" else "Twilio hung up")
                call.check()
            if self.sim.real_since(started) < 1.0:
                await call.sleep(1.0)
