"""HTTP plumbing for every service: one route declaration, problem responses, JSON bodies, JWT, ids, health,
metrics, OpenAPI.

A route is declared once (`Api.route`): method, path, roles, body, query and path types, status and response
model. The declaration enforces the roles, parses and validates the input, and serialises the handler's answer
through the response model, so the handler cannot drift from the published OpenAPI document.

Errors are RFC 9457 problem documents (`application/problem+json`): malformed or too deeply nested JSON is
400, a body that is not JSON 415, input that breaks the schema 422 listing each field, missing or bad
credentials 401, a wrong role 403, an unknown route 404, the database unreachable 503 with `Retry-After`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NaiveDatetime,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)

from shared.auth import AuthError, Forbidden, Principal, TokenVerifier
from shared.db import DATABASE_UNAVAILABLE
from shared.errors import Conflict, InvalidInput, NotFound
from shared.logs import CORRELATION_ID, get_logger
from shared.messages import EARLIEST, INSTANT_RANGE, LATEST, Role, in_range_utc

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
M = TypeVar("M", bound=BaseModel)
B = TypeVar("B")
Q = TypeVar("Q")

PRINCIPAL = web.RequestKey("principal", Principal)
VERIFIER = web.AppKey("verifier", TokenVerifier)
READINESS = web.AppKey("readiness", list[tuple[str, Callable[[], Awaitable[None]], bool]])

# Whether the service's own directory or user projection knows this user as deactivated (see Api.deactivated).
Deactivated = Callable[[web.Application, UUID], Awaitable[bool]]
DEACTIVATED: web.AppKey[Deactivated] = web.AppKey("deactivated")

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram("http_request_seconds", "HTTP request latency", ["method", "route"])
PROBLEM_TYPE = "application/problem+json"
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})  # probes would drown the log
RETRY_AFTER_S = 5
MAX_JSON_DEPTH = 32

# --- instants the API accepts --------------------------------------------------------------------------------
# Every instant, local date-time and date the API takes lies in the platform's range (shared.messages).
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RANGE = INSTANT_RANGE
# The same range said in the published schema: the year is 1970 to 2199.
_YEAR = r"^(19[7-9]\d|2[01]\d\d)-"
_AFTER_YEAR = r"\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$"


def _iso_text(pattern: re.Pattern[str], example: str) -> Callable[[Any], Any]:
    """Only ISO 8601 text: pydantic would otherwise read numbers (and numeric strings) as Unix times."""

    def check(value: Any) -> Any:
        if isinstance(value, datetime | date):
            return value
        if not isinstance(value, str) or not pattern.match(value):
            raise ValueError(f"must be ISO 8601 text like {example}")
        return value

    return check


def _local_in_range(value: datetime) -> datetime:
    if not EARLIEST.replace(tzinfo=None) <= value < LATEST.replace(tzinfo=None):
        raise ValueError(f"must lie {_RANGE}")
    return value


def _date_in_range(value: date) -> date:
    if not EARLIEST.date() <= value < LATEST.date():
        raise ValueError(f"must lie {_RANGE}")
    return value


Instant = Annotated[
    AwareDatetime,
    BeforeValidator(_iso_text(_ISO_DATETIME, "2026-03-08T09:00:00Z")),
    AfterValidator(in_range_utc),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "pattern": _YEAR, "description": f"With a UTC offset; {_RANGE}."}
    ),
]
"""An instant with its offset, read as UTC (answers always give UTC)."""

LocalDateTime = Annotated[
    NaiveDatetime,
    BeforeValidator(_iso_text(_ISO_DATETIME, "2026-01-05T09:00:00")),
    AfterValidator(_local_in_range),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _YEAR + _AFTER_YEAR,
            "description": f"A local wall-clock date-time without offset; {_RANGE}.",
            "examples": ["2026-01-05T09:00:00"],
        }
    ),
]
"""A wall-clock date-time in some zone named elsewhere (no offset)."""

LocalDateTimeOut = Annotated[
    datetime,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\d{4}-" + _AFTER_YEAR,
            "description": "A local wall-clock date-time without offset.",
        }
    ),
]
"""A LocalDateTime in an answer: built from stored values without the input's range rule, so an old row
still shows."""

LocalDate = Annotated[
    date,
    BeforeValidator(_iso_text(_ISO_DATE, "2026-12-25")),
    AfterValidator(_date_in_range),
    WithJsonSchema(
        {"type": "string", "format": "date", "pattern": _YEAR, "description": f"A calendar date; {_RANGE}."}
    ),
]


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
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def _unprocessable(detail: str, errors: list[dict[str, Any]]) -> Problem:
    return Problem(422, "Unprocessable Content", detail, errors=errors)


def _is_json(content_type: str) -> bool:
    if content_type == "application/json":
        return True
    return content_type.startswith("application/") and content_type.endswith("+json")


async def read_json(request: web.Request, model: type[M]) -> M:
    """The request body as `model`: 415 unless it is declared JSON, 400 if it is not JSON or nests deeper than
    MAX_JSON_DEPTH, 422 naming each field that breaks the schema."""
    if not _is_json(request.content_type):
        raise Problem(415, "Unsupported Media Type", "send the body as JSON with Content-Type: application/json")
    raw = await request.read()
    try:
        data = json.loads(raw) if raw else None
    except ValueError as exc:  # not JSON, not UTF-8, or a number past Python's digit limit
        raise Problem(400, "Malformed JSON", f"request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise Problem(400, "Malformed JSON", f"request body nests deeper than {MAX_JSON_DEPTH} levels") from exc
    _check_tree(data)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _unprocessable("request body does not match the schema", validation_errors(exc)) from exc


def _check_tree(data: Any) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH (400) and text holding U+0000, which PostgreSQL cannot store
    (422 naming the field). Iterative, so no input can exhaust the stack."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise Problem(400, "Malformed JSON", f"request body nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, str):
            if "\x00" in value:
                raise _unprocessable(
                    "text must not contain NUL characters",
                    [{"field": path or "(body)", "message": "must not contain NUL (U+0000)", "type": "nul"}],
                )
        elif isinstance(value, dict):
            for key, item in value.items():
                stack.append((key, path, depth + 1))
                stack.append((item, f"{path}.{key}" if path else str(key), depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{path}.{i}" if path else str(i), depth + 1) for i, item in enumerate(value))


def read_query(request: web.Request, model: type[M]) -> M:
    """The query string as `model`; 422 naming each parameter that breaks it."""
    query = dict(request.query)
    _check_tree(query)
    try:
        return model.model_validate(query)
    except ValidationError as exc:
        raise _unprocessable("query parameters are invalid", validation_errors(exc)) from exc


class Page(BaseModel):
    """Paging for list endpoints; unknown query parameters are refused, so a typo is not silently ignored."""

    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=100, ge=1, le=500)
    # bounded so it always fits PostgreSQL's bigint OFFSET (found by the fuzz: a 27-digit offset was a 500)
    offset: int = Field(default=0, ge=0, le=10_000_000)


class Span(BaseModel):
    """`?from=&to=`: a span of time, [from, to)."""

    model_config = ConfigDict(extra="forbid")
    from_: Instant = Field(alias="from", description="Start, inclusive (ISO 8601 with offset).")
    to: Instant = Field(description="End, exclusive.")


class At(BaseModel):
    """`?at=`: the instant to ask about; now when left out."""

    model_config = ConfigDict(extra="forbid")
    at: Instant | None = Field(default=None, description="The instant to ask about; default now.")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def read_cursor(text: str | None, field: str = "cursor") -> tuple[datetime, UUID] | None:
    """The (created_at, id) a page ended at, from the opaque text `next_cursor` gave out (newest-first paging)."""
    if text is None:
        return None
    try:
        micros, _, entity_id = base64.urlsafe_b64decode(text.encode("ascii") + b"==").decode("ascii").partition("/")
        return _EPOCH + timedelta(microseconds=int(micros)), UUID(entity_id)
    except (ValueError, UnicodeError, binascii.Error, OverflowError) as exc:
        raise InvalidInput(field, "not a cursor this service gave out") from exc


def next_cursor(keys: Sequence[tuple[datetime, UUID]], limit: int) -> str | None:
    """The cursor of the page after one that listed `keys` ((created_at, id), newest first); None on the last."""
    if len(keys) < limit:
        return None
    created_at, entity_id = keys[-1]
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"{micros}/{entity_id}".encode()).decode("ascii").rstrip("=")


def _path_values(request: web.Request, adapters: Mapping[str, TypeAdapter[Any]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for name, raw in request.match_info.items():
        adapter = adapters.get(name)
        if adapter is None:
            values[name] = raw
            continue
        try:
            values[name] = adapter.validate_python(raw)
        except ValidationError as exc:
            errors += [{"field": name, "message": e["msg"], "type": e["type"]} for e in exc.errors(include_url=False)]
    if errors:
        raise _unprocessable("path parameters are invalid", errors)
    return values


@dataclass(frozen=True)
class Call(Generic[B, Q]):
    """What a route handler gets: the caller, and its parsed, validated input."""

    request: web.Request
    caller: Principal | None
    body: B
    query: Q
    path: Mapping[str, Any]

    @property
    def actor(self) -> Principal:
        """The authenticated caller (every /v1 route has one)."""
        if self.caller is None:
            raise AuthError("this route needs a bearer token")
        return self.caller

    @property
    def app(self) -> web.Application:
        return self.request.app


RouteHandler = Callable[[Call[Any, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Rendered:
    """An answer already serialised through the route's response type (`Api.render`), e.g. built off the event
    loop in a worker process because it is large."""

    body: bytes


@dataclass(frozen=True)
class WithStatus:
    """An answer with one of the success statuses the route declares in `also` (e.g. 202 while a workflow
    that usually finishes at once is still under way)."""

    value: Any
    status: int


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
        return problem_response(409, "Conflict", str(exc), **exc.details)
    except InvalidInput as exc:
        return problem_response(
            422, "Unprocessable Content", str(exc), errors=[{"field": exc.field, "message": str(exc), "type": "rule"}]
        )
    except DATABASE_UNAVAILABLE as exc:
        log.warning("database unavailable", error=repr(exc))
        resp = problem_response(503, "Service Unavailable", "the database is unreachable; try again shortly")
        resp.headers["Retry-After"] = str(RETRY_AFTER_S)
        return resp
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
    request_id = _header_id(request, "X-Request-ID") or str(uuid.uuid4())
    correlation_id = _header_id(request, "X-Correlation-ID") or request_id
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


_ID_TEXT = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def _header_id(request: web.Request, name: str) -> str | None:
    """A caller-supplied id, only if it is short printable ASCII: it is echoed in headers and written to Kafka."""
    value = request.headers.get(name)
    return value if value and _ID_TEXT.match(value) else None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Everything under /v1/ needs a valid bearer token of a caller the service does not refuse."""
    if request.match_info.http_exception is not None:
        raise request.match_info.http_exception
    if request.path.startswith("/v1/"):
        caller = await request.app[VERIFIER].authenticate(request.headers.get("Authorization"))
        deactivated = request.app.get(DEACTIVATED)
        if deactivated is not None and await deactivated(request.app, caller.user_id):
            raise AuthError("this user is deactivated")
        request[PRINCIPAL] = caller
    return await handler(request)


@dataclass
class Operation:
    method: str
    path: str
    handler: RouteHandler
    summary: str
    roles: tuple[Role, ...]
    body: type[BaseModel] | None = None
    response: Any = None
    status: int = 200
    query: type[BaseModel] | None = None
    path_types: dict[str, Any] = field(default_factory=dict)
    conflicts: bool = False
    media_type: str = "application/json"
    also: dict[int, str] = field(default_factory=dict)
    signed: bool = False

    def __post_init__(self) -> None:
        protected = self.path.startswith("/v1/")
        if protected and not self.roles:
            raise ValueError(f"{self.method} {self.path}: a /v1 route must name the roles that may call it")
        if not protected and self.roles:
            raise ValueError(f"{self.method} {self.path}: only /v1 routes take a token; declare roles=PUBLIC")
        self._paths = {name: TypeAdapter(kind) for name, kind in self.path_types.items()}
        self._answer = _adapter(self.response) if self.response is not None else None

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        caller = request.get(PRINCIPAL)
        if self.roles:
            assert caller is not None  # auth_middleware authenticated every /v1 request
            caller.require(*self.roles)
        path = _path_values(request, self._paths)
        query = read_query(request, self.query) if self.query else None
        body = await read_json(request, self.body) if self.body else None
        result = await self.handler(Call(request, caller, body, query, path))
        status = self.status
        if isinstance(result, WithStatus):
            if result.status not in self.also:
                raise ValueError(f"{self.method} {self.path}: status {result.status} is not declared in `also`")
            result, status = result.value, result.status
        if isinstance(result, web.StreamResponse):
            return result
        if isinstance(result, Rendered):
            return web.Response(body=result.body, status=status, content_type="application/json")
        if self._answer is None:
            return web.Response(status=status)
        return web.Response(body=self._answer.dump_json(result), status=status, content_type="application/json")


class Api:
    """A service's routes, each declared once, with enough metadata to publish an OpenAPI document."""

    def __init__(self, title: str, version: str, description: str = "") -> None:
        self.title, self.version, self.description = title, version, description
        self.operations: list[Operation] = []
        # Tokens cannot be revoked, so every /v1 request asks this (when set) and refuses a deactivated user
        # with 401. An id the service does not know is not refused (e.g. an operator's admin token).
        self.deactivated: Deactivated | None = None

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        roles: tuple[Role, ...],
        body: type[BaseModel] | None = None,
        response: Any = None,
        status: int = 200,
        query: type[BaseModel] | None = None,
        path_types: dict[str, Any] | None = None,
        conflicts: bool = False,
        media_type: str = "application/json",
        also: Mapping[int, str] | None = None,
        signed: bool = False,
    ) -> Callable[[RouteHandler], RouteHandler]:
        """Declare a route. The handler takes a `Call` (caller, body, query, path, all validated) and returns an
        instance of `response` (serialised through it, with `status`), None for an empty answer, or a ready
        aiohttp response (for media other than JSON). `roles` may call it (PUBLIC: no token); `conflicts` says
        it may answer 409; `also` documents other success statuses with the same body, which the handler
        chooses by returning `WithStatus(value, status)`; `signed` marks a public route whose request carries a
        signature it checks (a provider's webhook), which answers 403 when it does not hold."""

        def register(handler: RouteHandler) -> RouteHandler:
            self.operations.append(
                Operation(
                    method, path, handler, summary, roles, body, response, status, query, path_types or {},
                    conflicts, media_type, dict(also or {}), signed,
                )
            )
            return handler

        return register

    def add_to(self, app: web.Application) -> None:
        for op in self.operations:
            app.router.add_route(op.method, op.path, _handler(op))

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of these routes, schemas taken from the pydantic models."""
        components: dict[str, Any] = {"Problem": _PROBLEM_SCHEMA}
        paths: dict[str, Any] = {}

        def ref(model: Any, mode: str) -> dict[str, Any]:
            schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}", mode=mode)  # type: ignore[arg-type]
            components.update(schema.pop("$defs", {}))
            if "title" in schema and schema.get("type") == "object":
                components[schema["title"]] = schema
                return {"$ref": f"#/components/schemas/{schema['title']}"}
            return schema

        for op in self.operations:
            ok: dict[str, Any] = {"description": "OK"}
            if op.response is not None:
                ok["content"] = {op.media_type: {"schema": ref(op.response, "serialization")}}
            elif op.media_type != "application/json":
                ok["content"] = {op.media_type: {"schema": {"type": "string"}}}
            responses: dict[str, Any] = {str(op.status): ok}
            for code, why in op.also.items():
                responses[str(code)] = {**ok, "description": why}
            for code, why in _ERRORS.items():
                if code in (401, 403, 503) and not op.roles and not (code == 403 and op.signed):
                    continue
                if code in (400, 415) and not op.body:
                    continue
                if code == 422 and not op.body and not op.query and "{" not in op.path:
                    continue
                if code == 409 and not op.conflicts:
                    continue
                responses[str(code)] = {
                    "description": why,
                    "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                }
            doc = (getattr(op.handler, "__doc__", None) or "").strip()
            who = ", ".join(op.roles) if op.roles else "public (no token; the path carries its secret)"
            entry: dict[str, Any] = {
                "summary": op.summary,
                "operationId": op.handler.__name__,
                "description": (doc + "\n\n" if doc else "") + f"Roles: {who}.",
                "responses": responses,
                "parameters": _parameters(op),
            }
            if op.body:
                body_schema = _without_nul(ref(op.body, "validation"))
                entry["requestBody"] = {"required": True, "content": {"application/json": {"schema": body_schema}}}
            if op.roles:
                entry["security"] = [{"bearer": []}]
            paths.setdefault(op.path, {})[op.method.lower()] = entry
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version, "description": self.description},
            "paths": paths,
            "components": {
                "schemas": {name: _without_nul(schema) for name, schema in components.items()},
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            },
        }


API = web.AppKey("api", Api)

# Every text a body carries is refused when it holds U+0000 (`_check_tree`: PostgreSQL cannot store it); the
# documents say so, so a client generated from them (and the API fuzzer) knows.
NO_NUL = "^[^\\u0000]*$"


def _without_nul(schema: Any) -> Any:
    """`schema` with every free-text string (no format, pattern, enum or const of its own) declared NUL-free."""
    if isinstance(schema, list):
        return [_without_nul(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _without_nul(value) for key, value in schema.items()}
    if out.get("type") == "string" and not {"format", "pattern", "enum", "const"} & out.keys():
        out["pattern"] = NO_NUL
    return out


def render(response: Any, value: Any) -> Rendered:
    """`value` serialised as the response type `response` declares, wherever this runs (a worker process too)."""
    return Rendered(_adapter(response).dump_json(value))


@functools.cache
def _adapter(response: Any) -> TypeAdapter[Any]:
    return TypeAdapter(response)


def _handler(op: Operation) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await op(request)

    handle.__name__ = getattr(op.handler, "__name__", "handler")
    return handle


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params = [
        {
            "name": name, "in": "path", "required": True,
            "schema": TypeAdapter(op.path_types.get(name, str)).json_schema(),
        }
        for name in _path_params(op.path)
    ]
    if op.query:
        schema = op.query.model_json_schema()
        required = set(schema.get("required", ()))
        for name, prop in schema["properties"].items():
            prop.pop("title", None)
            params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
    return params


def _path_params(path: str) -> list[str]:
    return [name.split(":")[0] for name in re.findall(r"\{([^{}]+)\}", path)]


_ERRORS = {
    400: "Malformed JSON, or nested too deeply",
    401: "Missing, invalid or expired token, or a deactivated user",
    403: "The caller's role or identity may not do this",
    404: "Not found",
    409: "Conflicts with the current state (e.g. a unique name or e-mail is taken)",
    415: "The body is not sent as JSON (Content-Type: application/json)",
    422: "The input breaks the schema or a rule; `errors` lists each field",
    503: "The database is unreachable; retry after `Retry-After` seconds",
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
MAX_BODY_BYTES = 1024 * 1024


def build_app(api: Api, verifier: TokenVerifier) -> web.Application:
    """An aiohttp app with the shared middlewares, health, metrics and OpenAPI routes, and `api`'s routes."""
    app = web.Application(
        middlewares=[context_middleware, problem_middleware, auth_middleware],
        client_max_size=MAX_BODY_BYTES,
        # aiohttp answers lines over 8 KiB with a plain-text 400 before any middleware runs; a long but valid
        # query string deserves the same problem document as any other bad input.
        handler_args={"max_line_size": MAX_LINE_BYTES, "max_field_size": MAX_LINE_BYTES},
    )
    app[VERIFIER] = verifier
    app[API] = api
    app[READINESS] = []
    if api.deactivated is not None:
        app[DEACTIVATED] = api.deactivated
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi_json)
    api.add_to(app)
    return app
