"""HTTP plumbing for every service: problem responses, JSON bodies, JWT, ids, health, metrics, OpenAPI.

Errors are RFC 9457 problem documents (`application/problem+json`): malformed JSON is 400, a body that
breaks the schema is 422 listing each field, missing or bad credentials 401, a wrong role 403, an unknown
route 404.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared.auth import AuthError, Forbidden, Principal, TokenVerifier
from shared.errors import Conflict, InvalidInput, NotFound
from shared.logs import CORRELATION_ID, get_logger

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
M = TypeVar("M", bound=BaseModel)

PRINCIPAL = web.RequestKey("principal", Principal)
VERIFIER = web.AppKey("verifier", TokenVerifier)
READINESS = web.AppKey("readiness", list[tuple[str, Callable[[], Awaitable[None]], bool]])

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram("http_request_seconds", "HTTP request latency", ["method", "route"])
PROBLEM_TYPE = "application/problem+json"
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})  # probes would drown the log


class Problem(Exception):
    """An error the client can act on, rendered as an RFC 9457 problem document."""

    def __init__(self, status: int, title: str, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra


def problem_response(status: int, title: str, detail: str | None = None, **extra: Any) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, **({"detail": detail} if detail else {})}
    return web.json_response(body | extra, status=status, content_type=PROBLEM_TYPE)


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "message": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]


async def read_json(request: web.Request, model: type[M]) -> M:
    """The request body as `model`: 400 if it is not JSON, 422 naming each field that breaks the schema."""
    raw = await request.read()
    try:
        data = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Problem(400, "Malformed JSON", f"request body is not valid JSON: {exc}") from exc
    _refuse_nul(data, "")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Problem(
            422, "Unprocessable Content", "request body does not match the schema", errors=validation_errors(exc)
        ) from exc


def _refuse_nul(value: Any, path: str) -> None:
    """PostgreSQL text cannot hold U+0000; refuse it up front with the field's name instead of failing later."""
    if isinstance(value, str):
        if "\x00" in value:
            raise Problem(
                422,
                "Unprocessable Content",
                "text must not contain NUL characters",
                errors=[{"field": path or "(body)", "message": "must not contain NUL (U+0000)", "type": "nul"}],
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_nul(key, path)
            _refuse_nul(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_nul(item, f"{path}.{i}" if path else str(i))


def read_query(request: web.Request, model: type[M]) -> M:
    """The query string as `model`; 422 naming each parameter that breaks it."""
    _refuse_nul(dict(request.query), "")
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise Problem(
            422, "Unprocessable Content", "query parameters are invalid", errors=validation_errors(exc)
        ) from exc


class Page(BaseModel):
    """Paging for list endpoints; unknown query parameters are refused, so a typo is not silently ignored."""

    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=100, ge=1, le=500)
    # bounded so it always fits PostgreSQL's bigint OFFSET (found by the fuzz: a 27-digit offset was a 500)
    offset: int = Field(default=0, ge=0, le=10_000_000)


def parse_param(request: web.Request, name: str, kind: type[Any]) -> Any:
    """A path or query parameter converted to `kind`; 422 naming it when it does not convert."""
    raw = request.match_info.get(name, request.query.get(name))
    try:
        return TypeAdapter(kind).validate_python(raw)
    except ValidationError as exc:
        raise Problem(
            422,
            "Unprocessable Content",
            f"parameter '{name}' is invalid",
            errors=[{"field": name, "message": e["msg"], "type": e["type"]} for e in exc.errors()],
        ) from exc


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def json_response(model: BaseModel | Sequence[BaseModel], status: int = 200) -> web.Response:
    if isinstance(model, BaseModel):
        text = model.model_dump_json()
    else:
        text = "[" + ",".join(m.model_dump_json() for m in model) + "]"
    return web.Response(text=text, status=status, content_type="application/json")


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as exc:
        return problem_response(exc.status, exc.title, exc.detail, **exc.extra)
    except AuthError as exc:
        resp = problem_response(401, "Unauthorized", str(exc))
        resp.headers["WWW-Authenticate"] = 'Bearer realm="oncall"'
        return resp
    except Forbidden as exc:
        return problem_response(403, "Forbidden", str(exc))
    except NotFound as exc:
        return problem_response(404, "Not Found", str(exc))
    except Conflict as exc:
        return problem_response(409, "Conflict", str(exc))
    except InvalidInput as exc:
        return problem_response(
            422, "Unprocessable Content", str(exc), errors=[{"field": exc.field, "message": str(exc)}]
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        resp = problem_response(exc.status, exc.reason, exc.text if exc.text != f"{exc.status}: {exc.reason}" else None)
        if "Allow" in exc.headers:
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except Exception:
        log.exception("unhandled error")
        return problem_response(500, "Internal Server Error", "the error was logged")


@web.middleware
async def context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-ID") or str(uuid.uuid4())
    correlation_id = request.headers.get("X-Correlation-ID") or request_id
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    started = time.perf_counter()
    status = 500
    with structlog.contextvars.bound_contextvars(request_id=request_id, **{CORRELATION_ID: correlation_id}):
        try:
            response = await handler(request)
            status = response.status
        finally:
            elapsed = time.perf_counter() - started
            HTTP_REQUESTS.labels(request.method, route, str(status)).inc()
            HTTP_LATENCY.labels(request.method, route).observe(elapsed)
            if route not in _QUIET_ROUTES:
                log.info("http request", method=request.method, route=route, status=status, ms=round(elapsed * 1000, 1))
    response.headers["X-Request-ID"] = request_id
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Everything under /v1/ needs a valid bearer token; health, metrics, docs and webhooks do not."""
    if request.match_info.http_exception is not None:
        raise request.match_info.http_exception
    if request.path.startswith("/v1/"):
        request[PRINCIPAL] = await request.app[VERIFIER].authenticate(request.headers.get("Authorization"))
    return await handler(request)


@dataclass
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None
    response: Any
    status: int
    roles: tuple[str, ...]
    query: type[BaseModel] | None = None
    path_types: dict[str, Any] = field(default_factory=dict)
    conflicts: bool = False


class Api:
    """Routes with enough metadata to publish an OpenAPI document alongside them."""

    def __init__(self, title: str, version: str, description: str = "") -> None:
        self.title, self.version, self.description = title, version, description
        self.operations: list[Operation] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        body: type[BaseModel] | None = None,
        response: Any = None,
        status: int = 200,
        roles: tuple[str, ...] = ("admin", "responder", "observer"),
        query: type[BaseModel] | None = None,
        path_types: dict[str, Any] | None = None,
        conflicts: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Register a handler; `query` and `path_types` (name -> type) document its parameters, `conflicts`
        that it may answer 409."""

        def register(handler: Handler) -> Handler:
            self.operations.append(
                Operation(
                    method, path, handler, summary, body, response, status, roles, query, path_types or {}, conflicts
                )
            )
            return handler

        return register

    def add_to(self, app: web.Application) -> None:
        for op in self.operations:
            app.router.add_route(op.method, op.path, op.handler)

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of these routes, schemas taken from the pydantic models."""
        components: dict[str, Any] = {"Problem": _PROBLEM_SCHEMA}
        paths: dict[str, Any] = {}

        def ref(model: Any) -> dict[str, Any]:
            schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
            components.update(schema.pop("$defs", {}))
            if "title" in schema and schema.get("type") == "object":
                components[schema["title"]] = schema
                return {"$ref": f"#/components/schemas/{schema['title']}"}
            return schema

        for op in self.operations:
            responses: dict[str, Any] = {
                str(op.status): {"description": "OK"}
                | ({"content": {"application/json": {"schema": ref(op.response)}}} if op.response else {})
            }
            for code, why in _ERRORS.items():
                if code in (401, 403) and not op.path.startswith("/v1/"):
                    continue
                if code in (400, 422) and not op.body and not op.query and "{" not in op.path:
                    continue
                if code == 409 and not op.conflicts:
                    continue
                responses[str(code)] = {
                    "description": why,
                    "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                }
            entry: dict[str, Any] = {
                "summary": op.summary,
                "operationId": op.handler.__name__,
                "description": (op.handler.__doc__ or "").strip() + f"\n\nRoles: {', '.join(op.roles)}.",
                "responses": responses,
                "parameters": _parameters(op),
            }
            if op.body:
                entry["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(op.body)}}}
            if op.path.startswith("/v1/"):
                entry["security"] = [{"bearer": []}]
            paths.setdefault(op.path, {})[op.method.lower()] = entry
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version, "description": self.description},
            "paths": paths,
            "components": {
                "schemas": components,
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            },
        }


API = web.AppKey("api", Api)


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params = [
        {"name": name, "in": "path", "required": True, "schema": _schema_of(op.path_types.get(name, str))}
        for name in _path_params(op.path)
    ]
    if op.query:
        schema = op.query.model_json_schema()
        required = set(schema.get("required", ()))
        for name, prop in schema["properties"].items():
            prop.pop("title", None)
            params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
    return params


def _schema_of(kind: Any) -> dict[str, Any]:
    return TypeAdapter(kind).json_schema()


def _path_params(path: str) -> list[str]:
    return [name.split(":")[0] for name in re.findall(r"\{([^{}]+)\}", path)]


_ERRORS = {
    400: "Malformed JSON",
    401: "Missing, invalid or expired token",
    403: "The caller's role or identity may not do this",
    404: "Not found",
    409: "Conflicts with the current state (e.g. a unique name or e-mail is taken)",
    422: "The input breaks the schema; `errors` lists each field",
}

_PROBLEM_SCHEMA = {
    "type": "object",
    "title": "Problem",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["title", "status"],
}


async def healthz(_: web.Request) -> web.Response:
    """Liveness: the process serves HTTP. Depends on nothing else."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: every required check passes. Optional ones (the broker) are reported, not required: the
    outbox lets a service keep accepting work while Kafka is away, and webhooks must keep answering."""
    checks: dict[str, str] = {}
    ready = True
    for name, check, required in request.app[READINESS]:
        try:
            await check()
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"failing: {exc!r}"
            ready = ready and not required
    status = "ready" if ready else "unavailable"
    return web.json_response({"status": status, "checks": checks}, status=200 if ready else 503)


async def metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[API].openapi())


MAX_LINE_BYTES = 64 * 1024


def build_app(api: Api, verifier: TokenVerifier) -> web.Application:
    """An aiohttp app with the shared middlewares, health, metrics and OpenAPI routes, and `api`'s routes."""
    app = web.Application(
        middlewares=[context_middleware, problem_middleware, auth_middleware],
        # aiohttp answers lines over 8 KiB with a plain-text 400 before any middleware runs; a long but valid
        # query string deserves the same problem document as any other bad input.
        handler_args={"max_line_size": MAX_LINE_BYTES, "max_field_size": MAX_LINE_BYTES},
    )
    app[VERIFIER] = verifier
    app[API] = api
    app[READINESS] = []
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi_json)
    api.add_to(app)
    return app
