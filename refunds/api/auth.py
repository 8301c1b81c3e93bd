"""Channel API authentication: the X-Violet-* headers, and the JWTs that login and refresh issue.

Every call carries the app's id and secret (`X-Violet-App-Id`, `X-Violet-App-Secret`); every call
but login also carries a token (`X-Violet-Token`) minted for one user of that app. Tokens are HS512
JWTs signed with a key derived from SECRET_KEY; a `token_type` claim keeps a long-lived refresh
token from being used as an access token. Failures are 401s with a machine-readable error_code;
an expired token gets the body Violet documents (`error_code` 11, "Token has expired").
"""

import hashlib
import hmac
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import jwt
from django.conf import settings
from django.contrib.auth import authenticate as django_authenticate
from django.contrib.auth.hashers import check_password, make_password
from django.utils.crypto import salted_hmac
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import Throttled

from refunds import selectors
from refunds.models import App, AppMembership
from violet_refunds.exceptions import ApplicationError, AuthenticationFailed
from violet_refunds.throttling import login_throttled_wait

APP_ID_HEADER = "X-Violet-App-Id"
APP_SECRET_HEADER = "X-Violet-App-Secret"
TOKEN_HEADER = "X-Violet-Token"

TOKEN_ALGORITHM = "HS512"
TOKEN_ISSUER = "violet-refunds"
TOKEN_SCOPE = "ROLE_DEVELOPER"
USER_TYPE = "DEVELOPER"
REQUIRED_CLAIMS = ["sub", "scopes", "user_id", "app_id", "iss", "iat", "exp", "token_type"]


class TokenType:
    ACCESS = "access"
    REFRESH = "refresh"


class AuthErrorCode:
    """error_code values of the 401s. 11 is Violet's documented code for an expired token."""

    APP_CREDENTIALS_MISSING = "app_credentials_missing"
    APP_CREDENTIALS_INVALID = "app_credentials_invalid"
    TOKEN_MISSING = "token_missing"
    TOKEN_INVALID = "token_invalid"
    TOKEN_EXPIRED = 11
    LOGIN_FAILED = "invalid_credentials"
    NOT_APP_OWNER = "not_app_owner"


class NotAppOwner(ApplicationError):
    """The password was right, but only an app's owner may mint tokens (spec section 3)."""

    status_code = 403
    error_code = AuthErrorCode.NOT_APP_OWNER


LOGIN_FAILED_MESSAGE = "Invalid username or password."
TOKEN_EXPIRED_MESSAGE = "Token has expired"


@dataclass(frozen=True)
class ApiCredentials:
    """What authentication proved; DRF exposes it as `request.auth`."""

    app: App
    user: object | None = None
    claims: dict = field(default_factory=dict)


# --- app id + secret ---------------------------------------------------------------------------

# App secrets are hashed with Django's password hasher, which is deliberately slow (hundreds of ms).
# Paying that on every API call would make the hasher the API's bottleneck, so a process remembers
# which (stored hash, secret) pairs it has already verified. Only an HMAC of the secret is kept, and
# a new secret_hash (rotation) never matches an old entry.
_VERIFIED_SECRETS: set[tuple[str, str]] = set()
_VERIFIED_SECRETS_MAX = 1024
_VERIFIED_SECRETS_LOCK = threading.Lock()


def _secret_fingerprint(secret: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), secret.encode(), hashlib.sha256).hexdigest()


def app_secret_matches(app: App, secret: str) -> bool:
    key = (app.secret_hash, _secret_fingerprint(secret))
    if key in _VERIFIED_SECRETS:
        return True
    if not check_password(secret, app.secret_hash):
        return False
    with _VERIFIED_SECRETS_LOCK:
        if len(_VERIFIED_SECRETS) >= _VERIFIED_SECRETS_MAX:
            _VERIFIED_SECRETS.clear()
        _VERIFIED_SECRETS.add(key)
    return True


def _header(request, name: str) -> str:
    return (request.headers.get(name) or "").strip()


def _parse_id(value: str) -> int | None:
    # App ids are int32 in the API; anything else cannot name an app.
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        return None
    return int(value)


def app_authenticate(request) -> App:
    """The app named by X-Violet-App-Id, if X-Violet-App-Secret is its secret; else a 401.

    An unknown id and a wrong secret give the same answer, so app ids cannot be probed.
    """
    raw_app_id, secret = _header(request, APP_ID_HEADER), _header(request, APP_SECRET_HEADER)
    if not raw_app_id or not secret:
        raise AuthenticationFailed(
            f"The {APP_ID_HEADER} and {APP_SECRET_HEADER} headers are required.",
            error_code=AuthErrorCode.APP_CREDENTIALS_MISSING,
        )
    app_id = _parse_id(raw_app_id)
    app = selectors.app_get(app_id) if app_id is not None else None
    if app is None:
        make_password(secret)  # spend the time a wrong secret would: no probing ids by timing
    if app is None or not app_secret_matches(app, secret):
        raise AuthenticationFailed("Invalid app id or app secret.", error_code=AuthErrorCode.APP_CREDENTIALS_INVALID)
    return app


# --- tokens --------------------------------------------------------------------------------------


def _signing_key(secret_key: str) -> bytes:
    # A key of its own, derived from SECRET_KEY, so a token can never be confused with any other
    # value Django signs (sessions, password reset links...).
    return salted_hmac("refunds.api.auth.jwt", "signing-key", secret=secret_key, algorithm="sha512").digest()


def token_issue(*, user, app: App, token_type: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    lifetime = (
        settings.API_REFRESH_TOKEN_TTL_SECONDS if token_type == TokenType.REFRESH else settings.API_TOKEN_TTL_SECONDS
    )
    claims = {
        "sub": user.get_username(),
        "scopes": TOKEN_SCOPE,
        "user_id": user.pk,
        "user_type": USER_TYPE,
        "app_id": str(app.pk),
        "iss": TOKEN_ISSUER,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=lifetime)).timestamp()),
        "token_type": token_type,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, _signing_key(settings.SECRET_KEY), algorithm=TOKEN_ALGORITHM)


def _invalid_token() -> AuthenticationFailed:
    return AuthenticationFailed("Token is invalid.", error_code=AuthErrorCode.TOKEN_INVALID)


def token_decode(raw_token: str, *, expected_type: str) -> dict:
    """The claims of a token we issued, of the expected type, not expired; else a 401."""
    # Tokens signed before a SECRET_KEY rotation stay valid while the old key is a fallback.
    secret_keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    claims = None
    for secret_key in secret_keys:
        try:
            claims = jwt.decode(
                raw_token,
                _signing_key(secret_key),
                algorithms=[TOKEN_ALGORITHM],
                issuer=TOKEN_ISSUER,
                options={"require": REQUIRED_CLAIMS},
            )
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed(TOKEN_EXPIRED_MESSAGE, error_code=AuthErrorCode.TOKEN_EXPIRED) from None
        except jwt.InvalidTokenError:
            raise _invalid_token() from None
    if claims is None or claims.get("token_type") != expected_type:
        raise _invalid_token()
    if not isinstance(claims.get("user_id"), int) or isinstance(claims["user_id"], bool):
        raise _invalid_token()
    return claims


def login_owner(*, request, app: App, username: str, password: str):
    """The user whose username and password these are, if they own `app`; else a 401.

    An unknown user, a wrong password, an inactive user and a user of another app all get the
    same answer. A developer of the app (not its owner) gets a 403: only owners mint tokens.
    """
    user = django_authenticate(request, username=username, password=password)
    wait = login_throttled_wait(request)
    if wait is not None:
        # Over the per-IP or per-username login rate (violet_refunds.throttling): 429, Retry-After.
        raise Throttled(wait=wait, detail="Too many login attempts; try again later.")
    if user is None:
        raise AuthenticationFailed(LOGIN_FAILED_MESSAGE, error_code=AuthErrorCode.LOGIN_FAILED)
    role = selectors.app_membership_role(app=app, user=user)
    if role is None:
        raise AuthenticationFailed(LOGIN_FAILED_MESSAGE, error_code=AuthErrorCode.LOGIN_FAILED)
    if role != AppMembership.Role.OWNER:
        raise NotAppOwner("Only the app's owner can obtain API tokens.")
    return user


# --- DRF authentication -------------------------------------------------------------------------


class VioletAuthentication(BaseAuthentication):
    """The X-Violet-* headers. One class (so the OpenAPI security schemes have one owner), three uses:

    - `token_type=ACCESS` (the default, every refund endpoint): app id + secret + access token; the
      token's app must be the header's app and its user still the app's active owner;
    - `token_type=REFRESH` (GET /auth/token): the same, with the refresh token in X-Violet-Token;
    - `token_type=None` (POST /login): app id + secret only.
    """

    def __init__(self, token_type: str | None = TokenType.ACCESS):
        self.token_type = token_type

    def authenticate(self, request):
        if self.token_type is not None:
            authenticated = self._authenticate_in_one_query(request)
            if authenticated is not None:
                return authenticated
        # The step-by-step path: slower, and the one that says precisely what is wrong.
        app = app_authenticate(request)
        if self.token_type is None:
            return None, ApiCredentials(app=app)
        raw_token = _header(request, TOKEN_HEADER)
        if not raw_token:
            raise AuthenticationFailed(
                f"The {TOKEN_HEADER} header is required.", error_code=AuthErrorCode.TOKEN_MISSING
            )
        claims = token_decode(raw_token, expected_type=self.token_type)
        if claims["app_id"] != str(app.pk):
            raise _invalid_token()
        # A token outlives nothing: a deactivated user or a revoked ownership ends it at once.
        user = selectors.app_owner_get(app=app, user_id=claims["user_id"])
        if user is None:
            raise _invalid_token()
        return user, ApiCredentials(app=app, user=user, claims=claims)

    def _authenticate_in_one_query(self, request):
        """Valid credentials cost one plain SQL statement (app + owner together, after the token is
        checked without the database). Anything unusual returns None and takes the step-by-step path, so
        every error keeps its precise code and order."""
        raw_app_id, secret = _header(request, APP_ID_HEADER), _header(request, APP_SECRET_HEADER)
        raw_token = _header(request, TOKEN_HEADER)
        app_id = _parse_id(raw_app_id) if raw_app_id else None
        token_type = self.token_type
        if app_id is None or not secret or not raw_token or token_type is None:
            return None
        try:
            claims = token_decode(raw_token, expected_type=token_type)
        except AuthenticationFailed:
            return None
        if claims["app_id"] != str(app_id):
            return None
        # Read on every request (no cache): a revoked ownership or a deactivated user ends the token at once.
        credentials = selectors.app_owner_credentials_get(app_id=app_id, user_id=claims["user_id"])
        if credentials is None:
            return None
        app, user = credentials
        if not app_secret_matches(app, secret):
            return None
        return user, ApiCredentials(app=app, user=user, claims=claims)

    def authenticate_header(self, request):
        # Any value makes DRF answer 401 (not 403) to unauthenticated requests.
        return 'Violet realm="api"'


# --- OpenAPI -------------------------------------------------------------------------------------

_SECURITY_SCHEMES = {
    "VioletAppId": {
        "type": "apiKey",
        "in": "header",
        "name": APP_ID_HEADER,
        "description": "The app (channel) id.",
    },
    "VioletAppSecret": {
        "type": "apiKey",
        "in": "header",
        "name": APP_SECRET_HEADER,
        "description": "The app secret.",
    },
    "VioletToken": {
        "type": "apiKey",
        "in": "header",
        "name": TOKEN_HEADER,
        "description": "The token from POST /login (the refresh token for GET /auth/token).",
    },
}


class VioletAuthenticationScheme(OpenApiAuthenticationExtension):
    """Every header the endpoint needs, required together (one security requirement naming all)."""

    target_class = VioletAuthentication
    name = ["VioletAppId", "VioletAppSecret", "VioletToken"]

    def __init__(self, target):
        super().__init__(target)
        if getattr(target, "token_type", TokenType.ACCESS) is None:
            self.name = ["VioletAppId", "VioletAppSecret"]

    def get_security_definition(self, auto_schema):
        return [_SECURITY_SCHEMES[name] for name in self.name]
