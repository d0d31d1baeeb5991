"""Telephony simulator: a local Twilio for voice that plays whole calls, for notifier and callrouter.

It speaks the part of Twilio's REST API (2010-04-01) the twilio package's client uses for voice: `Calls`
(create, fetch, list, update: `Status=canceled|completed`, `Url`/`Twiml` redirect a live call), `Recordings`
(resource and media: `RecordingUrl` + `.wav`/`.mp3`) and `IncomingPhoneNumbers` (create, fetch, list, update,
delete) — form-encoded, HTTP basic auth with the account SID and auth token, Twilio's JSON errors. Calls are
played: a leg created through the REST API rings the party scripted for its `To` and posts its status callbacks
(`initiated`, `ringing`, `answered`, `completed` as asked by StatusCallbackEvent; `completed` always); once
answered it runs the TwiML of its `Url` or `Twiml`. An incoming call (`POST /_sim/incoming`) from a scripted
caller to one of the account's numbers posts the number's VoiceUrl like Twilio (Direction=inbound, signed
X-Twilio-Signature over the URL called plus the sorted parameters) and runs the TwiML it answers: Say, Play,
Pause, Gather (keys and speech), Record, Redirect, Hangup, Reject, Enqueue (waitUrl, action with QueueResult),
Leave, Dial with Number (url, statusCallback), Queue (dequeues and bridges) and Conference. A webhook that
answers no TwiML is an application error: the party hears Twilio's apology and the call ends.

Parties are scripted per phone number (`Party`: answer / busy / no-answer / failed, how long it rings, the
input at successive Gathers, hanging up, leaving a voicemail); a number nobody scripted rings until
`/_fake/calls/{sid}/press` or `/complete` (REST calls stay queued until then, as the notifier's tests expect).
Every leg keeps a transcript (heard, played, pressed, said, dialed, ringing, answered, bridged, recorded,
hung-up, webhook ... each with a timestamp): `GET /_sim/calls/{sid}`, `GET /_sim/calls?to=&from=`, and the
merged transcript of every leg connected with one: `GET /_sim/conversations/{sid}`.

Simulated time (ringing, Gather and Record timeouts, speech, music) runs at `--time-scale` real seconds per
simulated second: 1 by default on the command line, 0.01 for `FakeTwilio.running()` in tests.

    python -m tools.fakes.twilio --port 9412 [--time-scale 0.1] [--voice-url URL] [--number +4930...=URL]
    python -m tools.fakes.twilio call --to +4930... [--press 1 | --say billing] [--responder +4915...=busy]

docs/telephony-simulator.md has the test API, the scripting format, and what is not emulated.
"""

from tools.fakes.twilio.engine import APPLICATION_ERROR, AppError, Simulator
from tools.fakes.twilio.helper import TEST_TIME_SCALE, FakeTwilio, SimClient, SimTimeout
from tools.fakes.twilio.rest import MAX_TWIML_CHARS, PROGRAMMABLE_FAILURES
from tools.fakes.twilio.state import (
    API_VERSION,
    DEV_ACCOUNT_SID,
    DEV_AUTH_TOKEN,
    Call,
    Event,
    FailureStatus,
    Party,
    PhoneNumber,
    Recording,
    Step,
    TwilioState,
)
from tools.fakes.twilio.webhooks import WEBHOOK_TIMEOUT_S

# The old fake's name for a call it placed.
PlacedCall = Call

__all__ = [
    "API_VERSION",
    "APPLICATION_ERROR",
    "DEV_ACCOUNT_SID",
    "DEV_AUTH_TOKEN",
    "MAX_TWIML_CHARS",
    "PROGRAMMABLE_FAILURES",
    "TEST_TIME_SCALE",
    "WEBHOOK_TIMEOUT_S",
    "AppError",
    "Call",
    "Event",
    "FailureStatus",
    "FakeTwilio",
    "Party",
    "PhoneNumber",
    "PlacedCall",
    "Recording",
    "SimClient",
    "SimTimeout",
    "Simulator",
    "Step",
    "TwilioState",
]
