"""A local fake of Firebase Cloud Messaging's HTTP v1 API and of Google's OAuth2 token endpoint.

It generates a service account (an RSA key and the JSON file Google would hand out, with `token_uri` pointing
here), so a provider loads it with google-auth exactly like a real one and gets its access token the real way:
a JWT-bearer grant signed with the account's key, which the fake verifies. `messages:send` checks the access
token, validates the message like FCM does (field names, enums, durations, string-only data) and answers in
Google's error format. "The phone" is `GET /_fake/messages?token=`; failures are programmed per device token.

    python -m tools.fakes.fcm --port 9411 --state-dir .run/fcm

writes (or reuses the key of) `.run/fcm/service-account.json`. Not emulated: topics and conditions are
accepted but reach nobody, webpush is only type-checked, there is no delivery to the apps and no per-device
rate limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# google-auth signs its grant for Google's endpoint whatever `token_uri` says, as Google expects.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ACCESS_TOKEN_LIFETIME_S = 3600
SERVICE_ACCOUNT_FILE = "service-account.json"
DEFAULT_PROJECT = "oncall-local"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"

FcmErrorCode = Literal[
    "INVALID_ARGUMENT", "UNREGISTERED", "SENDER_ID_MISMATCH", "QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"
]
# errorCode -> (HTTP status, google.rpc status, message), as FCM answers them.
FCM_ERRORS: dict[str, tuple[int, str, str]] = {
    "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token"),
    "UNREGISTERED": (404, "NOT_FOUND", "Requested entity was not found."),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SenderId mismatch"),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED", "Quota exceeded for sending messages to this device."),
    "UNAVAILABLE": (503, "UNAVAILABLE", "The service is currently unavailable."),
    "INTERNAL": (500, "INTERNAL", "Internal error encountered."),
}
DEVICE_TOKEN = re.compile(r"^[A-Za-z0-9_\-:.]+$")
DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")
MAX_TTL_S = 28 * 24 * 3600
MAX_PAYLOAD_BYTES = 4096
RESERVED_DATA_KEYS = frozenset({"from", "notification", "message_type"})

# The fields of each message part FCM knows (snake_case; lowerCamelCase is accepted too, as by any proto JSON).
MESSAGE_FIELDS = frozenset(
    {"name", "data", "notification", "android", "webpush", "apns", "fcm_options", "token", "topic", "condition"}
)
NOTIFICATION_FIELDS = frozenset({"title", "body", "image"})
ANDROID_FIELDS = frozenset(
    {
        "collapse_key",
        "priority",
        "ttl",
        "restricted_package_name",
        "data",
        "notification",
        "fcm_options",
        "direct_boot_ok",
    }
)
ANDROID_NOTIFICATION_FIELDS = frozenset(
    {
        "title",
        "body",
        "icon",
        "color",
        "sound",
        "tag",
        "click_action",
        "body_loc_key",
        "body_loc_args",
        "title_loc_key",
        "title_loc_args",
        "channel_id",
        "ticker",
        "sticky",
        "event_time",
        "local_only",
        "notification_priority",
        "default_sound",
        "default_vibrate_timings",
        "default_light_settings",
        "vibrate_timings",
        "visibility",
        "notification_count",
        "light_settings",
        "image",
        "bypass_proxy_notification",
        "proxy",
    }
)
APNS_FIELDS = frozenset({"headers", "payload", "fcm_options", "live_activity_token"})
WEBPUSH_FIELDS = frozenset({"headers", "data", "notification", "fcm_options"})
ANDROID_PRIORITIES = frozenset({"NORMAL", "HIGH"})
NOTIFICATION_PRIORITIES = frozenset(
    {"PRIORITY_UNSPECIFIED", "PRIORITY_MIN", "PRIORITY_LOW", "PRIORITY_DEFAULT", "PRIORITY_HIGH", "PRIORITY_MAX"}
)
VISIBILITIES = frozenset({"VISIBILITY_UNSPECIFIED", "PRIVATE", "PUBLIC", "SECRET"})


@dataclass(frozen=True)
class ServiceAccount:
    """A Google service account: what its JSON key file holds."""

    project_id: str
    client_email: str
    private_key_id: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls, project_id: str = DEFAULT_PROJECT) -> ServiceAccount:
        return cls(
            project_id=project_id,
            client_email=f"firebase-adminsdk-fake@{project_id}.iam.gserviceaccount.com",
            private_key_id=secrets.token_hex(20),
            private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        )

    @classmethod
    def load(cls, path: Path) -> ServiceAccount:
        info = json.loads(path.read_text())
        key = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path}: not an RSA service account key")
        return cls(info["project_id"], info["client_email"], info["private_key_id"], key)

    def file_contents(self, token_uri: str) -> dict[str, str]:
        """The service-account JSON, shaped like the one the Google Cloud console downloads."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": pem.decode(),
            "client_email": self.client_email,
            "client_id": str(int(self.private_key_id[:16], 16)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{self.client_email}",
            "universe_domain": "googleapis.com",
        }


@dataclass
class Programmed:
    """What the fake does with the next sends to one device token: fail with `error` (None: succeed), after
    `delay_s`, for `times` sends (None: until reprogrammed)."""

    error: FcmErrorCode | None
    times: int | None = 1
    retry_after_s: float | None = None
    delay_s: float = 0.0


@dataclass(frozen=True)
class AccessToken:
    expires_at: float
    scopes: frozenset[str]


@dataclass
class FcmState:
    """Everything the fake knows: the account, the tokens it issued, what it received, what it is told to do."""

    account: ServiceAccount
    access_tokens: dict[str, AccessToken] = field(default_factory=dict)
    token_grants: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    programmed: dict[str, Programmed] = field(default_factory=dict)

    def program(
        self,
        token: str,
        error: FcmErrorCode | None,
        *,
        times: int | None = 1,
        retry_after_s: float | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Make the next `times` sends to `token` fail with `error` (or just be slow when error is None)."""
        self.programmed[token] = Programmed(error, times, retry_after_s, delay_s)

    def take_programmed(self, token: str) -> Programmed | None:
        programmed = self.programmed.get(token)
        if programmed is not None and programmed.times is not None:
            programmed.times -= 1
            if programmed.times <= 0:
                del self.programmed[token]
        return programmed

    def expire_access_tokens(self) -> None:
        """Invalidate every access token issued so far, as if an hour had passed."""
        self.access_tokens.clear()

    def received(self, token: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.messages if token is None or m["token"] == token]


STATE = web.AppKey("state", FcmState)


def google_error(
    http_status: int,
    status: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """An error in the format every Google API answers with."""
    error: dict[str, Any] = {"code": http_status, "message": message, "status": status}
    if details:
        error["details"] = details
    return web.json_response({"error": error}, status=http_status, headers=headers)


def fcm_error(code: str, retry_after_s: float | None = None) -> web.Response:
    http_status, status, message = FCM_ERRORS[code]
    details: list[dict[str, Any]] = [{"@type": FCM_ERROR_TYPE, "errorCode": code}]
    if code == "INVALID_ARGUMENT":
        details.append(
            {"@type": BAD_REQUEST_TYPE, "fieldViolations": [{"field": "message.token", "description": message}]}
        )
    headers = {"Retry-After": f"{retry_after_s:g}"} if retry_after_s is not None else None
    return google_error(http_status, status, message, details, headers)


def invalid_argument(message: str, field_path: str) -> web.Response:
    return google_error(
        400,
        "INVALID_ARGUMENT",
        message,
        [
            {"@type": FCM_ERROR_TYPE, "errorCode": "INVALID_ARGUMENT"},
            {"@type": BAD_REQUEST_TYPE, "fieldViolations": [{"field": field_path, "description": message}]},
        ],
    )


def oauth_error(error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=400)


async def token_endpoint(request: web.Request) -> web.Response:
    """Google's OAuth2 token endpoint, for the JWT-bearer grant of a service account (RFC 7523)."""
    state = request.app[STATE]
    form = await request.post()
    grant_type = form.get("grant_type")
    if grant_type != JWT_BEARER_GRANT:
        return oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant_type!s}")
    assertion = form.get("assertion")
    if not isinstance(assertion, str):
        return oauth_error("invalid_request", "Missing required parameter: assertion")
    account = state.account
    try:
        if jwt.get_unverified_header(assertion).get("kid") not in (None, account.private_key_id):
            return oauth_error("invalid_grant", "Invalid JWT Signature.")
        claims = jwt.decode(
            assertion,
            account.private_key.public_key(),
            algorithms=["RS256"],
            audience=[GOOGLE_TOKEN_AUDIENCE, str(request.url)],
            options={"require": ["iss", "aud", "iat", "exp"]},
        )
    except jwt.InvalidSignatureError:
        return oauth_error("invalid_grant", "Invalid JWT Signature.")
    except jwt.PyJWTError as exc:
        return oauth_error("invalid_grant", f"Invalid JWT: {exc}")
    if claims["iss"] != account.client_email:
        return oauth_error("invalid_grant", "Invalid email or User ID")
    if claims["exp"] - claims["iat"] > ACCESS_TOKEN_LIFETIME_S:
        return oauth_error(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
            "reasonable timeframe. Check your iat and exp values in the JWT claim.",
        )
    scopes = frozenset(str(claims.get("scope", "")).split())
    if not scopes:
        return oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
    access_token = "ya29.fake-" + secrets.token_urlsafe(32)
    state.access_tokens[access_token] = AccessToken(time.time() + ACCESS_TOKEN_LIFETIME_S, scopes)
    state.token_grants += 1
    return web.json_response(
        {"access_token": access_token, "expires_in": ACCESS_TOKEN_LIFETIME_S, "token_type": "Bearer"}
    )


def unauthenticated(reason: str) -> web.Response:
    return google_error(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
        "valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        [
            {
                "@type": ERROR_INFO_TYPE,
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": {
                    "service": "fcm.googleapis.com",
                    "method": "google.firebase.fcm.v1.FcmService.SendMessage",
                },
            }
        ],
        headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'},
    )


def check_access(request: web.Request, project: str) -> web.Response | None:
    """The refusal for a request without a valid access token for `project`, or None."""
    state = request.app[STATE]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return unauthenticated("CREDENTIALS_MISSING")
    issued = state.access_tokens.get(token)
    if issued is None:
        return unauthenticated("ACCESS_TOKEN_TYPE_UNSUPPORTED")
    if issued.expires_at <= time.time():
        return unauthenticated("ACCESS_TOKEN_EXPIRED")
    if not issued.scopes & {FCM_SCOPE, CLOUD_PLATFORM_SCOPE}:
        return google_error(
            403,
            "PERMISSION_DENIED",
            "Request had insufficient authentication scopes.",
            [{"@type": ERROR_INFO_TYPE, "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "domain": "googleapis.com"}],
        )
    if project != state.account.project_id:
        return google_error(
            403,
            "PERMISSION_DENIED",
            f"Permission 'cloudmessaging.messages.create' denied on resource "
            f"'//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist).",
        )
    return None


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


class Invalid(Exception):
    """A message FCM would refuse with 400 INVALID_ARGUMENT; `field_path` names the offending field."""

    def __init__(self, message: str, field_path: str):
        super().__init__(message)
        self.field_path = field_path


def fields(value: Any, allowed: frozenset[str], path: str) -> dict[str, Any]:
    """`value` as an object with snake_case keys, refusing names FCM does not know."""
    if not isinstance(value, dict):
        raise Invalid(f"Invalid value at '{path}': expected an object", path)
    normalised = {}
    for name, item in value.items():
        key = snake_case(name)
        if key not in allowed:
            raise Invalid(
                f"Invalid JSON payload received. Unknown name \"{name}\" at '{path}': Cannot find field.", path
            )
        normalised[key] = item
    return normalised


def check_string_map(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise Invalid(f"Invalid value at '{path}': expected a map of strings", path)
    for index, (key, item) in enumerate(value.items()):
        if not isinstance(item, str):
            raise Invalid(
                f"Invalid value at '{path}[{index}].value' (TYPE_STRING), {json.dumps(item)}", f"{path}[{index}].value"
            )
        if path.endswith("data") and (key in RESERVED_DATA_KEYS or key.startswith(("google", "gcm"))):
            raise Invalid(f"Invalid data payload key: {key}", path)


def check_enum(value: Any, allowed: frozenset[str], path: str, *, any_case: bool = False) -> None:
    name = value.upper() if any_case and isinstance(value, str) else value
    if name not in allowed:
        raise Invalid(f"Invalid value at '{path}' ({path.rsplit('.', 1)[-1]}), {json.dumps(value)}", path)


def check_types(value: Mapping[str, Any], types: Mapping[str, type | tuple[type, ...]], path: str) -> None:
    for name, expected in types.items():
        is_bool_for_int = expected is int and isinstance(value.get(name), bool)
        if name in value and (not isinstance(value[name], expected) or is_bool_for_int):
            raise Invalid(f"Invalid value at '{path}.{name}', {json.dumps(value[name])}", f"{path}.{name}")


def check_android(value: Any) -> None:
    android = fields(value, ANDROID_FIELDS, "message.android")
    check_types(
        android, {"collapse_key": str, "restricted_package_name": str, "direct_boot_ok": bool}, "message.android"
    )
    if "priority" in android:
        check_enum(android["priority"], ANDROID_PRIORITIES, "message.android.priority", any_case=True)
    if "ttl" in android:
        ttl = android["ttl"]
        if not isinstance(ttl, str) or not DURATION.match(ttl):
            raise Invalid(
                f"Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), "
                f"{json.dumps(ttl)}",
                "message.android.ttl",
            )
        if float(ttl[:-1]) > MAX_TTL_S:
            raise Invalid("TTL must be at most 4 weeks", "message.android.ttl")
    if "data" in android:
        check_string_map(android["data"], "message.android.data")
    if "notification" in android:
        notification = fields(android["notification"], ANDROID_NOTIFICATION_FIELDS, "message.android.notification")
        path = "message.android.notification"
        check_types(
            notification,
            {
                name: str
                for name in (
                    "title",
                    "body",
                    "icon",
                    "color",
                    "sound",
                    "tag",
                    "click_action",
                    "channel_id",
                    "ticker",
                    "image",
                )
            },
            path,
        )
        check_types(
            notification,
            {
                "sticky": bool,
                "local_only": bool,
                "default_sound": bool,
                "default_vibrate_timings": bool,
                "default_light_settings": bool,
                "notification_count": int,
            },
            path,
        )
        if "notification_priority" in notification:
            check_enum(notification["notification_priority"], NOTIFICATION_PRIORITIES, f"{path}.notification_priority")
        if "visibility" in notification:
            check_enum(notification["visibility"], VISIBILITIES, f"{path}.visibility")
        if notification.get("notification_count", 0) < 0:
            raise Invalid("notification_count must not be negative", f"{path}.notification_count")


def check_message(body: Any) -> dict[str, Any]:
    """The message of a `messages:send` body, if FCM would accept it; raises Invalid otherwise."""
    request = fields(body, frozenset({"message", "validate_only"}), "")
    message = fields(request.get("message"), MESSAGE_FIELDS, "message")
    targets = [name for name in ("token", "topic", "condition") if message.get(name)]
    if len(targets) != 1:
        raise Invalid("Exactly one of token, topic or condition must be specified.", "message")
    check_types(message, {"token": str, "topic": str, "condition": str}, "message")
    if "notification" in message:
        notification = fields(message["notification"], NOTIFICATION_FIELDS, "message.notification")
        check_types(notification, {"title": str, "body": str, "image": str}, "message.notification")
    if "data" in message:
        check_string_map(message["data"], "message.data")
    if "android" in message:
        check_android(message["android"])
    if "apns" in message:
        apns = fields(message["apns"], APNS_FIELDS, "message.apns")
        if "headers" in apns:
            check_string_map(apns["headers"], "message.apns.headers")
        check_types(apns, {"payload": dict}, "message.apns")
    if "webpush" in message:
        fields(message["webpush"], WEBPUSH_FIELDS, "message.webpush")
    payload = {k: message.get(k) for k in ("notification", "data", "android")}
    if len(json.dumps(payload).encode()) > MAX_PAYLOAD_BYTES:
        raise Invalid("Android message is too big", "message")
    return message


async def send_message(request: web.Request) -> web.Response:
    """`POST /v1/projects/{project}/messages:send`."""
    state = request.app[STATE]
    project = request.match_info["project"]
    refusal = check_access(request, project)
    if refusal is not None:
        return refusal
    try:
        body = await request.json()
    except ValueError:
        return invalid_argument("Invalid JSON payload received.", "")
    try:
        message = check_message(body)
    except Invalid as exc:
        return invalid_argument(str(exc), exc.field_path)
    token = message.get("token")
    if token is not None and not DEVICE_TOKEN.match(token):
        return fcm_error("INVALID_ARGUMENT")
    if body.get("validate_only") is True:
        return web.json_response({"name": f"projects/{project}/messages/fake_message_id"})
    programmed = state.take_programmed(token) if token is not None else None
    if programmed is not None:
        await asyncio.sleep(programmed.delay_s)
        if programmed.error is not None:
            return fcm_error(programmed.error, programmed.retry_after_s)
    name = f"projects/{project}/messages/0:{int(time.time() * 1000)}%{secrets.token_hex(8)}"
    state.messages.append({"name": name, "token": token, "message": message, "received_at": time.time()})
    return web.json_response({"name": name})


async def list_messages(request: web.Request) -> web.Response:
    """What the phones received: `GET /_fake/messages?token=`."""
    return web.json_response({"messages": request.app[STATE].received(request.query.get("token"))})


async def program_token(request: web.Request) -> web.Response:
    """`POST /_fake/program {"token", "error", "times", "retry_after_s", "delay_s"}` (error null: slow success)."""
    spec = await request.json()
    error = spec.get("error")
    if error is not None and error not in FCM_ERRORS:
        raise web.HTTPBadRequest(text=f"error must be one of {sorted(FCM_ERRORS)} or null")
    request.app[STATE].program(
        spec["token"],
        error,
        times=spec.get("times", 1),
        retry_after_s=spec.get("retry_after_s"),
        delay_s=spec.get("delay_s", 0.0),
    )
    return web.json_response({"programmed": spec["token"]})


async def expire_tokens(request: web.Request) -> web.Response:
    request.app[STATE].expire_access_tokens()
    return web.json_response({"expired": True})


def create_app(state: FcmState) -> web.Application:
    """The fake's aiohttp application over `state`."""
    app = web.Application()
    app[STATE] = state
    app.router.add_post("/token", token_endpoint)
    app.router.add_post("/v1/projects/{project}/messages:send", send_message)
    app.router.add_get("/_fake/messages", list_messages)
    app.router.add_post("/_fake/program", program_token)
    app.router.add_post("/_fake/expire-tokens", expire_tokens)
    return app


def load_or_generate_account(state_dir: Path, project_id: str = DEFAULT_PROJECT) -> ServiceAccount:
    """The account whose key is kept in `state_dir`, or a new one when there is none yet."""
    path = state_dir / SERVICE_ACCOUNT_FILE
    return ServiceAccount.load(path) if path.exists() else ServiceAccount.generate(project_id)


def write_service_account(state_dir: Path, account: ServiceAccount, token_uri: str) -> Path:
    """Write the account's key file into `state_dir`, pointing at `token_uri`; returns its path."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / SERVICE_ACCOUNT_FILE
    path.write_text(json.dumps(account.file_contents(token_uri), indent=2))
    path.chmod(0o600)
    return path


@dataclass
class FakeFcm:
    """A running fake: its `url` (the FCM base URL), the `service_account_path` to give the provider, and
    its state to inspect and program."""

    url: str
    service_account_path: Path
    state: FcmState

    @property
    def project_id(self) -> str:
        return self.state.account.project_id

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.state.messages

    def received(self, token: str) -> list[dict[str, Any]]:
        """The messages delivered to one device token."""
        return self.state.received(token)

    def program(
        self,
        token: str,
        error: FcmErrorCode | None,
        *,
        times: int | None = 1,
        retry_after_s: float | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Make the next `times` sends to `token` fail with `error` (None: succeed, after `delay_s`)."""
        self.state.program(token, error, times=times, retry_after_s=retry_after_s, delay_s=delay_s)

    def expire_access_tokens(self) -> None:
        self.state.expire_access_tokens()

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, state_dir: Path | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> AsyncIterator[FakeFcm]:
        """Serve the fake in this event loop on `port` (0: a free one) until the block ends."""
        with contextlib.ExitStack() as stack:
            directory = state_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fake-fcm-")))
            state = FcmState(load_or_generate_account(directory))
            runner = web.AppRunner(create_app(state), access_log=None)
            await runner.setup()
            try:
                site = web.TCPSite(runner, host, port)
                await site.start()
                bound_port = runner.addresses[0][1]
                url = f"http://{host}:{bound_port}"
                yield cls(url, write_service_account(directory, state.account, f"{url}/token"), state)
            finally:
                await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="Local fake of FCM HTTP v1 and its OAuth2 token endpoint.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True, help=f"where {SERVICE_ACCOUNT_FILE} is kept")
    parser.add_argument("--project", default=DEFAULT_PROJECT)
    args = parser.parse_args()
    url = f"http://{args.host}:{args.port}"
    account = load_or_generate_account(args.state_dir, args.project)
    write_service_account(args.state_dir, account, f"{url}/token")
    print(f"fake FCM on {url}, service account {args.state_dir / SERVICE_ACCOUNT_FILE}", flush=True)
    web.run_app(create_app(FcmState(account)), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
