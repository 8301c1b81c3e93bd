"""Login, refresh, and the X-Violet-* headers: who gets in, and what everyone else gets back."""

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from refunds.api.auth import (
    TOKEN_ALGORITHM,
    TOKEN_HEADER,
    TokenType,
    _signing_key,
    token_decode,
    token_issue,
)
from refunds.models import AppMembership
from tests.factories import DEFAULT_APP_SECRET, DEFAULT_PASSWORD, AppMembershipFactory, UserFactory
from tests.refunds.api.conftest import channel_headers

pytestmark = pytest.mark.django_db

LOGIN = "/v1/login"
REFRESH = "/v1/auth/token"
USER_KEYS = {
    "id", "first_name", "last_name", "password", "email", "type", "verified", "status",
    "date_created", "date_last_modified", "roles", "tos_accepted", "payment_configured",
    "token", "refresh_token", "merchant_id", "store_url",
}  # fmt: skip


def _login(api_client, app, username, password, **header_overrides):
    headers = {**channel_headers(app), **header_overrides}
    return api_client.post(LOGIN, {"username": username, "password": password}, format="json", headers=headers)


def _without_timestamp(body: dict) -> dict:
    assert isinstance(body["timestamp"], int)
    return {key: value for key, value in body.items() if key != "timestamp"}


def _refunds_url(placed) -> str:
    return f"/v1/orders/{placed.order.pk}/refunds"


def test_login_returns_the_user_object_with_tokens_and_never_the_password(api_client, channel):
    response = _login(api_client, channel.app, channel.owner.username, DEFAULT_PASSWORD)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == USER_KEYS
    assert body["password"] is None
    assert body["id"] == channel.owner.pk
    assert body["email"] == channel.owner.email
    assert (body["first_name"], body["last_name"]) == ("Ada", "Owner")
    assert body["type"] == "DEVELOPER"
    assert channel.owner.password not in response.content.decode()

    claims = token_decode(body["token"], expected_type=TokenType.ACCESS)
    assert claims["user_id"] == channel.owner.pk
    assert claims["app_id"] == str(channel.app.pk)
    assert claims["sub"] == channel.owner.username
    assert claims["scopes"] == "ROLE_DEVELOPER"
    assert claims["exp"] - claims["iat"] == 86400
    assert jwt.get_unverified_header(body["token"])["alg"] == "HS512"
    refresh_claims = token_decode(body["refresh_token"], expected_type=TokenType.REFRESH)
    assert refresh_claims["exp"] - refresh_claims["iat"] == 30 * 86400


def test_the_login_token_opens_the_api(api_client, channel, placed):
    body = _login(api_client, channel.app, channel.owner.username, DEFAULT_PASSWORD).json()

    response = api_client.get(_refunds_url(placed), headers=channel_headers(channel.app, body["token"]))

    assert response.status_code == 200
    assert response.json() == []


def test_wrong_password_unknown_user_and_outsider_get_the_identical_401(api_client, channel):
    outsider = UserFactory()  # a real user with the right password, but not in this app

    responses = [
        _login(api_client, channel.app, channel.owner.username, "wrong password"),
        _login(api_client, channel.app, "nobody-by-this-name", DEFAULT_PASSWORD),
        _login(api_client, channel.app, outsider.username, DEFAULT_PASSWORD),
    ]

    assert {response.status_code for response in responses} == {401}
    bodies = [_without_timestamp(response.json()) for response in responses]
    assert bodies[0] == {
        "status": 401,
        "message": "Invalid username or password.",
        "error_code": "invalid_credentials",
    }
    assert bodies[1] == bodies[0]
    assert bodies[2] == bodies[0]
    assert all("token" not in response.json() for response in responses)


def test_inactive_owner_cannot_log_in(api_client, channel):
    channel.owner.is_active = False
    channel.owner.save()

    response = _login(api_client, channel.app, channel.owner.username, DEFAULT_PASSWORD)

    assert response.status_code == 401
    assert response.json()["error_code"] == "invalid_credentials"


def test_a_developer_of_the_app_is_not_its_owner(api_client, channel):
    developer = UserFactory()
    AppMembershipFactory(app=channel.app, user=developer, role=AppMembership.Role.DEVELOPER)

    response = _login(api_client, channel.app, developer.username, DEFAULT_PASSWORD)

    assert response.status_code == 403
    assert response.json()["error_code"] == "not_app_owner"
    assert "token" not in response.json()


def test_login_needs_the_app_secret(api_client, channel):
    response = _login(
        api_client, channel.app, channel.owner.username, DEFAULT_PASSWORD, **{"X-Violet-App-Secret": "no"}
    )

    assert response.status_code == 401
    assert response.json()["error_code"] == "app_credentials_invalid"


@pytest.mark.parametrize(
    "body",
    [{}, {"username": "a"}, {"username": 1, "password": "x"}, {"username": "a", "password": "b", "x": 1}],
)
def test_malformed_login_bodies_are_400(api_client, channel, body):
    response = api_client.post(LOGIN, body, format="json", headers=channel_headers(channel.app))

    assert response.status_code == 400
    assert response.json()["error_code"] == "validation_failed"


def test_owner_of_another_app_cannot_log_in_to_this_one(api_client, channel, other_channel):
    response = _login(api_client, channel.app, other_channel.owner.username, DEFAULT_PASSWORD)

    assert response.status_code == 401
    assert response.json()["error_code"] == "invalid_credentials"


# --- app credentials and tokens on every call ---------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "error_code"),
    [
        (lambda h, c: h.pop("X-Violet-App-Id"), "app_credentials_missing"),
        (lambda h, c: h.pop("X-Violet-App-Secret"), "app_credentials_missing"),
        (lambda h, c: h.update({"X-Violet-App-Secret": "wrong"}), "app_credentials_invalid"),
        (lambda h, c: h.update({"X-Violet-App-Id": "999999"}), "app_credentials_invalid"),
        (lambda h, c: h.update({"X-Violet-App-Id": "abc"}), "app_credentials_invalid"),
        (lambda h, c: h.update({"X-Violet-App-Id": "9" * 40}), "app_credentials_invalid"),
        (lambda h, c: h.pop(TOKEN_HEADER), "token_missing"),
        (lambda h, c: h.update({TOKEN_HEADER: "not-a-jwt"}), "token_invalid"),
        (lambda h, c: h.update({TOKEN_HEADER: h[TOKEN_HEADER] + "x"}), "token_invalid"),
        (lambda h, c: h.update({TOKEN_HEADER: c.refresh_token()}), "token_invalid"),
    ],
    ids=[
        "no-app-id", "no-secret", "wrong-secret", "unknown-app", "non-numeric-app-id",
        "huge-app-id", "no-token", "garbage-token", "tampered-token", "refresh-as-access",
    ],
)  # fmt: skip
def test_bad_credentials_are_401_with_a_machine_readable_code(api_client, channel, placed, mutate, error_code):
    headers = dict(channel.headers)
    mutate(headers, channel)

    response = api_client.get(_refunds_url(placed), headers=headers)

    assert response.status_code == 401
    body = response.json()
    assert body["status"] == 401
    assert body["error_code"] == error_code
    assert isinstance(body["message"], str)
    assert body["message"]


def test_unknown_app_and_wrong_secret_are_indistinguishable(api_client, channel, placed):
    wrong_secret = api_client.get(_refunds_url(placed), headers={**channel.headers, "X-Violet-App-Secret": "wrong"})
    unknown_app = api_client.get(_refunds_url(placed), headers={**channel.headers, "X-Violet-App-Id": "999999"})

    assert _without_timestamp(wrong_secret.json()) == _without_timestamp(unknown_app.json())


def test_expired_token_gets_violets_documented_body(api_client, channel, placed):
    issued = datetime.now(UTC) - timedelta(seconds=86400 + 60)
    expired = token_issue(user=channel.owner, app=channel.app, token_type=TokenType.ACCESS, now=issued)
    before_ms = int(datetime.now(UTC).timestamp() * 1000)

    response = api_client.get(_refunds_url(placed), headers=channel_headers(channel.app, expired))

    assert response.status_code == 401
    body = response.json()
    assert set(body) == {"status", "message", "error_code", "timestamp"}
    assert (body["status"], body["message"], body["error_code"]) == (401, "Token has expired", 11)
    assert before_ms - 1000 <= body["timestamp"] <= int(datetime.now(UTC).timestamp() * 1000) + 1000


def test_a_token_of_another_app_does_not_open_this_one(api_client, channel, other_channel, placed):
    headers = channel_headers(channel.app, other_channel.headers[TOKEN_HEADER])

    response = api_client.get(_refunds_url(placed), headers=headers)

    assert response.status_code == 401
    assert response.json()["error_code"] == "token_invalid"


def test_a_token_signed_with_another_key_is_rejected(api_client, channel, placed):
    claims = token_decode(channel.headers[TOKEN_HEADER], expected_type=TokenType.ACCESS)
    forged = jwt.encode(claims, _signing_key("someone else's key"), algorithm=TOKEN_ALGORITHM)

    response = api_client.get(_refunds_url(placed), headers=channel_headers(channel.app, forged))

    assert response.status_code == 401
    assert response.json()["error_code"] == "token_invalid"


def test_an_unsigned_token_is_rejected(api_client, channel, placed):
    claims = token_decode(channel.headers[TOKEN_HEADER], expected_type=TokenType.ACCESS)
    unsigned = jwt.encode(claims, None, algorithm="none")

    response = api_client.get(_refunds_url(placed), headers=channel_headers(channel.app, unsigned))

    assert response.status_code == 401
    assert response.json()["error_code"] == "token_invalid"


def test_tokens_stop_working_when_the_owner_is_deactivated_or_demoted(api_client, channel, placed):
    assert api_client.get(_refunds_url(placed), headers=channel.headers).status_code == 200
    AppMembership.objects.filter(app=channel.app, user=channel.owner).update(role=AppMembership.Role.DEVELOPER)

    response = api_client.get(_refunds_url(placed), headers=channel.headers)

    assert response.status_code == 401
    assert response.json()["error_code"] == "token_invalid"


def test_tokens_survive_a_secret_key_rotation_while_the_old_key_is_a_fallback(api_client, channel, placed, settings):
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "a-brand-new-secret-key-" + "x" * 40
    settings.SECRET_KEY_FALLBACKS = [old_key]

    assert api_client.get(_refunds_url(placed), headers=channel.headers).status_code == 200

    settings.SECRET_KEY_FALLBACKS = []
    response = api_client.get(_refunds_url(placed), headers=channel.headers)
    assert response.status_code == 401
    assert response.json()["error_code"] == "token_invalid"


# --- refresh ---------------------------------------------------------------------------------------


def test_refresh_token_buys_a_new_access_token(api_client, channel, placed):
    response = api_client.get(REFRESH, headers=channel_headers(channel.app, channel.refresh_token()))

    assert response.status_code == 200
    assert set(response.json()) == {"token"}
    new_token = response.json()["token"]
    assert token_decode(new_token, expected_type=TokenType.ACCESS)["user_id"] == channel.owner.pk
    assert api_client.get(_refunds_url(placed), headers=channel_headers(channel.app, new_token)).status_code == 200


def test_an_access_token_cannot_refresh(api_client, channel):
    response = api_client.get(REFRESH, headers=channel.headers)

    assert response.status_code == 401
    assert response.json()["error_code"] == "token_invalid"


def test_an_expired_refresh_token_is_reported_as_expired(api_client, channel):
    issued = datetime.now(UTC) - timedelta(days=31)
    expired = token_issue(user=channel.owner, app=channel.app, token_type=TokenType.REFRESH, now=issued)

    response = api_client.get(REFRESH, headers=channel_headers(channel.app, expired))

    assert response.status_code == 401
    assert (response.json()["message"], response.json()["error_code"]) == ("Token has expired", 11)


def test_refresh_needs_the_app_secret(api_client, channel):
    headers = channel_headers(channel.app, channel.refresh_token(), secret=DEFAULT_APP_SECRET + "x")

    response = api_client.get(REFRESH, headers=headers)

    assert response.status_code == 401
    assert response.json()["error_code"] == "app_credentials_invalid"


def test_repeated_failed_logins_lock_the_username_out_with_a_json_429(api_client, channel, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(2):
        assert _login(api_client, channel.app, channel.owner.username, "wrong password").status_code == 401
    # The third failure reaches the limit; from then on even the right password is refused.
    assert _login(api_client, channel.app, channel.owner.username, "wrong password").status_code == 429
    locked = _login(api_client, channel.app, channel.owner.username, DEFAULT_PASSWORD)
    assert locked.status_code == 429
    assert _without_timestamp(locked.json()) == {
        "status": 429,
        "message": "Too many failed login attempts. Try again later.",
        "error_code": "too_many_attempts",
    }
