"""structlog JSON logging with context-bound ids (request, event, correlation)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

CORRELATION_ID = "correlation_id"


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Route stdlib and structlog output through one JSON (or console) renderer on stdout."""
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
    ]
    structlog.configure(
        processors=[
            *shared_processors,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared_processors,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # faststream logs every message at INFO; our own consumer logs carry the ids that matter.
    logging.getLogger("faststream").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # httpx logs every request (every push) at INFO; notifier records each attempt itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _add_service(service: str) -> Any:
    def processor(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("service", service)
        return event

    return processor


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)


def current_correlation_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get(CORRELATION_ID)
    return str(value) if value is not None else None
