"""Benchmark `platform.e2e` (scenario 8, load): the whole platform as `make up` wires it (the vendor fakes, the
four services as processes, the Caddy gateway; tools.stack) on the real local broker and PostgreSQL
(KAFKA_BOOTSTRAP, DATABASE_URL), with the quick timers of the end-to-end tests, loaded through the gateway by
tools.load: `--workflows` coverage workflows and `--calls` calls to the hotlines, all started at once once their
casts (Ada, Ben, Cleo, a rotation, a policy, a hotline; PER_CAST workflows and one call each) are set up.

Printed as one JSON line: `coverage_p50_ms`, `coverage_p99_ms` (Ada's request sent -> the push on the recipient's
phone fake), `dial_p50_ms`, `dial_p99_ms` (the caller's key press -> the first responder's leg placed, on the
telephony simulator's clock), `lost` (workflows or calls that did not complete: a push missing, a request not
accepted, a call not connected with the one on call or its alert not acknowledged by them), `duplicates` (a push
shown twice on one phone, a responder dialed twice for one call), the completed counts, `setup_s` (platform and
casts) and `run_s` (the load itself). No target: the figures say what one 2-core machine does with everything on
it. Exit status 1 if anything was lost or duplicated; the reasons go to stderr and the logs are kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from _coverage_setup import env, progress

from tools.load import platform_load
from tools.scenarios import Api
from tools.stack import Platform

NAME = "platform.e2e"


async def main(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="oncall-bench-e2e-"))
    ok = False
    platform = await asyncio.to_thread(Platform.quick, run_dir, env())
    try:
        started_s = time.monotonic() - t0
        progress(t0, "platform ready")
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            figures = await platform_load(Api(platform.doors, http), args.workflows, args.calls,
                                          lambda line: progress(t0, line))
        summary = figures.summary()
        summary["setup_s"] = round(started_s + figures.setup_s, 1)
        print(json.dumps({"bench": NAME, **summary, "platform_start_s": round(started_s, 1)}), flush=True)
        for line in figures.lost + figures.duplicates:
            print(line, file=sys.stderr)
        ok = not figures.lost and not figures.duplicates
    finally:
        await asyncio.to_thread(platform.stop)
        if ok:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            print(f"logs kept in {run_dir / 'logs'}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workflows", type=int, default=200, help="coverage workflows started at once")
    parser.add_argument("--calls", type=int, default=50, help="calls started at once, with the workflows")
    sys.exit(asyncio.run(main(parser.parse_args())))
