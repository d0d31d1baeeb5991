"""`make demo`: the seeds' workflows played against the platform `make up` runs, each step in plain words.

A new cast each run (Ada, Ben, Cleo, their phones, a team, a rotation, a policy and a hotline), so it can run
again and again: 1. Ada asks Ben to cover two shifts and Ben accepts; 2. a caller rings the hotline and Ben
(on call by the coverage) declines, Cleo takes the call; 3. nobody answers, the caller leaves a voicemail and
the alert escalates until Cleo acknowledges it in the app. Every step is checked against what the platform
did (tools.scenarios); a step that does not happen stops the demo with the reason and exit status 1.
"""

from __future__ import annotations

import asyncio
import sys
import time

from tools import devstack
from tools.scenarios import demo
from tools.stack import Doors


def main() -> int:
    try:
        doors = Doors.of_make_up()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    minute_s = devstack.delay_minute_s()
    began = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - began:5.1f}s] {line}" if line else "", flush=True)

    print(f"Playing the demo through the gateway at {doors.api_url} (a minute of escalation lasts {minute_s:g} s).")
    try:
        asyncio.run(demo(doors, say, minute_s))
    except AssertionError as exc:  # a step the platform did not do (scenarios.Failed, or a wait that ran out)
        print(f"\ndemo stopped: {exc}", file=sys.stderr)
        return 1
    print(f"\ndone in {time.monotonic() - began:.0f} s; the services' logs: make logs NAME=callrouter")
    return 0


if __name__ == "__main__":
    sys.exit(main())
