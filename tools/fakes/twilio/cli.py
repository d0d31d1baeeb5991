"""The simulator's command line: serve it, or place a test call against a running one and print, step by step,
what the caller heard and who was dialed."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import aiohttp
from aiohttp import web

from tools.fakes.twilio.app import create_app
from tools.fakes.twilio.helper import SimClient
from tools.fakes.twilio.state import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN, Party, Step, TwilioState
from tools.fakes.twilio.testapi import configure_number, number_form

DEFAULT_CALLER = "+15005550100"
POLL_S = 0.2
# Once every leg has ended, polls to wait for a leg the application may still place or cancel.
QUIET_POLLS = 3


def number_and(value: str, what: str) -> tuple[str, str]:
    number, sep, rest = value.partition("=")
    if not sep or not number or not rest:
        raise argparse.ArgumentTypeError(f"expected NUMBER={what}, got {value!r}")
    return number, rest


def serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.fakes.twilio",
        description="Telephony simulator: Twilio's REST API for voice, incoming calls, TwiML, scripted parties.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--account-sid", default=DEV_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEV_AUTH_TOKEN)
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="real seconds per simulated second (0.01: a 20 s ring timeout takes 0.2 s); default 1")
    parser.add_argument("--public-url", help="the simulator's own base URL in RecordingUrls (default http://HOST:PORT)")
    parser.add_argument("--voice-url", help="where calls to numbers without a configuration of their own go")
    parser.add_argument("--voice-method", default="POST")
    parser.add_argument("--status-callback", help="the status callback of calls to those numbers")
    parser.add_argument("--number", action="append", default=[], metavar="NUMBER[=VOICE_URL]",
                        help="a number of the account (an IncomingPhoneNumber); repeatable")
    parser.add_argument("--party", action="append", default=[], metavar="NUMBER=SPEC",
                        type=lambda v: number_and(v, "SPEC"),
                        help="script the person at NUMBER: busy | no-answer | failed | answer[:STEP,...] where STEP "
                             "is keys, say=TEXT, silence or hangup; repeatable")
    args = parser.parse_args(argv)
    state = TwilioState(args.account_sid, args.auth_token, time_scale=args.time_scale)
    state.base_url = (args.public_url or f"http://{args.host}:{args.port}").rstrip("/")
    try:
        if args.voice_url:
            default = {"voice_url": args.voice_url, "voice_method": args.voice_method}
            configure_number(state, "default", number_form(default | {"status_callback": args.status_callback}))
        for spec in args.number:
            number, _, voice_url = spec.partition("=")
            configure_number(state, number, number_form({"voice_url": voice_url or None}))
        for number, party in args.party:
            state.parties[number] = Party.parse(party)
    except (ValueError, web.HTTPException) as exc:
        parser.error(str(exc))
    print(
        f"telephony simulator (fake Twilio) on http://{args.host}:{args.port} for account {args.account_sid}, "
        f"time scale {args.time_scale:g}",
        flush=True,
    )
    web.run_app(create_app(state), host=args.host, port=args.port, print=None)
    return 0


# ------------------------------------------------------------------------------------------------- `call`


def running_simulator() -> str | None:
    """The URL of the simulator `make up` started (its record in .run/fakes.json), if it runs."""
    from tools.devstack import RUN_DIR, load_fakes

    record = load_fakes(RUN_DIR).get("fake-twilio")
    if record is None or record.attach() is None:
        return None
    return record.inspect_url


def describe(event: dict[str, Any], calls: dict[str, dict[str, str]]) -> str:
    kind, text = event["kind"], event["text"]
    if kind == "heard":
        extra = f" ({event['language']})" if event.get("language") not in (None, "en-US") else ""
        text = f'hears "{text}"{extra}'
    elif kind == "played":
        text = f"hears {text}"
    who = f"{calls.get(event['call_sid'], {}).get('role', 'callee')} {event['party']}"
    return f"{event['sim_t']:8.1f}s  {who:<24} {text}"


async def place_call(args: argparse.Namespace) -> int:
    caller = Party(
        steps=tuple(args.steps or ()),
        hang_up_after_s=args.hang_up_after,
        talk_s=args.talk,
        voicemail_s=args.voicemail,
        hang_up_after_voicemail=args.hang_up_after_voicemail,
    )
    async with aiohttp.ClientSession() as http:
        sim = SimClient(args.sim, http)
        try:
            for number, spec in args.responder:
                await sim.script(number, Party.parse(spec))
            if args.voice_url:
                await sim.configure_number(args.to, voice_url=args.voice_url)
            placed = await sim.incoming_call(args.from_, args.to, caller)
        except (RuntimeError, ValueError, aiohttp.ClientError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        sid = placed["sid"]
        scale = (await sim.info())["time_scale"]
        print(f"calling {args.to} from {args.from_} (call {sid}; simulated seconds, time scale {scale:g})")
        # Every leg since this call's: the legs the application places through the REST API are calls of their
        # own, part of this call's conversation only once they are bridged with it.
        after, quiet = 0, 0
        deadline = asyncio.get_running_loop().time() + args.timeout
        while quiet < QUIET_POLLS:
            page = await sim.events(after, since_call=sid)
            for event in page["events"]:
                failed = event.get("error") or (event.get("http_status") or 0) >= 400
                if event["kind"] != "webhook" or args.verbose or failed:
                    print(describe(event, page["calls"]), flush=True)
            after = page["last"]
            quiet = quiet + 1 if page["ended"] else 0
            if asyncio.get_running_loop().time() > deadline:
                print(f"error: the call still runs after {args.timeout:g} s", file=sys.stderr)
                return 1
            await asyncio.sleep(POLL_S)
        view = await sim.conversation(sid)
        legs = ", ".join(f"{c['party']} {c['status']}" for c in page["calls"].values())
        connected = [c["party"] for c in view["calls"] if c["connected"] and c["sid"] != sid]
        talked = f"the caller talked with {', '.join(connected)}" if connected else "nobody answered"
        print(f"\nended: {legs}; {talked}")
        if args.json:
            print(json.dumps(view, indent=2))
        return 0


def call(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.fakes.twilio call",
        description="Call a number of the simulator as a scripted caller and print what happens, step by step.",
    )
    parser.add_argument("--sim", help="the simulator's URL (default: the one `make up` started)")
    parser.add_argument("--to", required=True, help="the number to call (a number of the simulator's account)")
    parser.add_argument("--from", dest="from_", default=DEFAULT_CALLER, help=f"the caller (default {DEFAULT_CALLER})")
    parser.add_argument("--press", dest="steps", action="append", type=Step.press, metavar="KEYS",
                        help="keys for the next <Gather>; repeatable, in order with --say and --silence")
    parser.add_argument("--say", dest="steps", action="append", type=Step.say, metavar="TEXT",
                        help="speech for the next <Gather>")
    parser.add_argument("--silence", dest="steps", action="append_const", const=Step.silence(),
                        help="no input at the next <Gather>")
    parser.add_argument("--hang-up", dest="steps", action="append_const", const=Step.hang_up(),
                        help="hang up at the next <Gather>")
    parser.add_argument("--hang-up-after", type=float, metavar="S", help="hang up S simulated seconds into the call")
    parser.add_argument("--talk", type=float, default=30.0, metavar="S",
                        help="once connected with someone, hang up after S simulated seconds (default 30)")
    parser.add_argument("--voicemail", type=float, metavar="S", help="speak S seconds when a <Record> comes")
    parser.add_argument("--hang-up-after-voicemail", action="store_true")
    parser.add_argument("--responder", action="append", default=[], metavar="NUMBER=SPEC",
                        type=lambda v: number_and(v, "SPEC"),
                        help="script the person at NUMBER first: busy | no-answer | failed | answer[:STEP,...]")
    parser.add_argument("--voice-url", help="point the number at this voice URL first")
    parser.add_argument("--timeout", type=float, default=300.0, help="real seconds to wait for the end (default 300)")
    parser.add_argument("--verbose", "-v", action="store_true", help="show every webhook too")
    parser.add_argument("--json", action="store_true", help="print the conversation as JSON at the end")
    args = parser.parse_args(argv)
    if args.sim is None:
        args.sim = running_simulator()
        if args.sim is None:
            print("error: no telephony simulator runs (`make up` starts one), and no --sim URL given", file=sys.stderr)
            return 1
    try:
        for _, spec in args.responder:
            Party.parse(spec)
    except ValueError as exc:
        parser.error(str(exc))
    return asyncio.run(place_call(args))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "call":
        return call(argv[1:])
    return serve(argv)
