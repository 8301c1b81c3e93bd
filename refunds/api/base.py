"""The base views of the channel API: JSON only, the API's error shape, the channel's credentials.

`ChannelAPIView` is public: the refunds API and the notifications API (webhooks, events) build on
it, so every channel-facing view authenticates and answers the same way.
"""

from typing import cast

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.views import APIView

from refunds.api.auth import ApiCredentials, VioletAuthentication
from refunds.models import App
from violet_refunds.exceptions import ValidationFailed


class JsonOnlyNegotiation(DefaultContentNegotiation):
    """The API speaks JSON only: whatever Accept says, the answer is JSON (never a 406 or HTML)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        renderer = renderers[0]
        return renderer, renderer.media_type


# No docstrings on these views: drf-spectacular would show a base class's docstring as the
# description of every operation built on it.


# A view of the API that needs no channel credentials (login, token refresh, the JSON 404).
class JsonAPIView(APIView):
    content_negotiation_class = JsonOnlyNegotiation

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        # DRF adds the 401 challenge only for its own exception classes; ours get it too.
        if response is not None and response.status_code == 401 and "WWW-Authenticate" not in response:
            challenge = self.get_authenticate_header(self.request)
            if challenge:
                response["WWW-Authenticate"] = challenge
        return response


# A view called with the channel's credentials (X-Violet-App-Id, X-Violet-App-Secret,
# X-Violet-Token); `self.app` is the authenticated app.
class ChannelAPIView(JsonAPIView):
    authentication_classes = [VioletAuthentication]

    @property
    def app(self) -> App:
        # What VioletAuthentication returned as `auth`; the stubs know only DRF's own Token.
        return cast(ApiCredentials, self.request.auth).app


IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX_LENGTH = 255


def idempotency_key_from_request(request) -> str | None:
    """The optional Idempotency-Key header, checked; None when absent."""
    key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise ValidationFailed(
            "The request is invalid.",
            field_errors={
                IDEMPOTENCY_KEY_HEADER: [f"Must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} characters when given."]
            },
        )
    return key
