"""Kafka subscribers of the schedule service: parse, then hand to the use case."""

from __future__ import annotations

from services.schedule.service import covers
from shared.messages import CoverageRequestAccepted, CoverageRequestRevoked, utcnow
from shared.runtime import Service
from shared.topics import COVERAGE_REQUESTS


def register(svc: Service) -> None:
    @svc.subscriber(COVERAGE_REQUESTS)
    async def on_coverage_request(event: CoverageRequestAccepted | CoverageRequestRevoked) -> None:
        """Apply an accepted coverage request (all shifts or none) or revert a revoked one; answer either way."""
        now = utcnow()
        if isinstance(event, CoverageRequestAccepted):
            await covers.apply_coverage(svc.pool, event, now)
        else:
            await covers.revoke_coverage(svc.pool, event, now)
