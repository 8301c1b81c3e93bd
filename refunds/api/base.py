"""The base views of the channel API: JSON only, the API's error shape, the channel's credentials.

`ChannelAPIView` is public: the refunds API and the notifications API (webhooks, events) build on
it, so every channel-facing view authenticates and answers the same way.
"""

import codecs
import json
from typing import cast

from django.conf import settings
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from refunds.api.auth import ApiCredentials, VioletAuthentication
from refunds.api.serializers import ErrorSerializer
from refunds.models import App
from violet_refunds.exceptions import BodyInvalid, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

# --- request bodies (docs/violet-api.md, Request bodies) -------------------------------------------

# The largest JSON body an API endpoint reads (API_MAX_BODY_BYTES overrides it), and how deeply it may
# nest: the deepest body the API takes (a refund's skus[].field) is 3 levels.
DEFAULT_API_MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32
JSON_MEDIA_TYPE = "application/json"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
EMPTY_BODY_MESSAGE = "The body must be a JSON object (send {} when no field is needed)."


def api_max_body_bytes() -> int:
    return int(getattr(settings, "API_MAX_BODY_BYTES", DEFAULT_API_MAX_BODY_BYTES))


def _nested_deeper_than(value, limit: int) -> bool:
    """Whether `value` has containers more than `limit` levels deep (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class JsonObjectParser(BaseParser):
    """application/json, read with a size cap, strict (no NaN), at most MAX_JSON_DEPTH deep, and an
    object at the top. Every failure is the API's 400 `invalid_body` or 413 `payload_too_large`."""

    media_type = JSON_MEDIA_TYPE
    renderer_class = JSONRenderer

    def parse(self, stream, media_type=None, parser_context=None):
        limit = api_max_body_bytes()
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(f"The body is larger than {limit} bytes.")
        encoding = ((parser_context or {}).get("encoding")) or settings.DEFAULT_CHARSET
        try:
            text = codecs.decode(raw, encoding)
            data = json.loads(text, parse_constant=_refuse_constant)
        except RecursionError:
            raise BodyInvalid(f"The body is nested too deeply (at most {MAX_JSON_DEPTH} levels).") from None
        except (ValueError, LookupError) as exc:  # JSONDecodeError, UnicodeDecodeError, unknown charset
            raise BodyInvalid(f"The body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BodyInvalid("The body must be a JSON object.")
        if _nested_deeper_than(data, MAX_JSON_DEPTH):
            raise BodyInvalid(f"The body is nested too deeply (at most {MAX_JSON_DEPTH} levels).")
        return data


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def json_object_required(request) -> None:
    """A body-carrying request (POST, PUT, PATCH) must be a JSON object, even when empty: the content
    type is application/json (415 otherwise, whatever the length), the body is not empty (400) and
    parses to an object (400; 413 when too large). Called once credentials are checked."""
    media_type = (request.content_type or "").split(";", 1)[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType("Send the body as JSON (Content-Type: application/json).")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    limit = api_max_body_bytes()
    if declared > limit:
        raise PayloadTooLarge(f"The body is larger than {limit} bytes.")
    if request.stream is None:
        raise BodyInvalid(EMPTY_BODY_MESSAGE)
    if not isinstance(request.data, dict):
        raise BodyInvalid("The body must be a JSON object.")


class JsonOnlyNegotiation(DefaultContentNegotiation):
    """The API speaks JSON only: whatever Accept says, the answer is JSON (never a 406 or HTML)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        renderer = renderers[0]
        return renderer, renderer.media_type


THROTTLED_STATUS = "429"
RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 1},
        "required": True,
    }
}
THROTTLED_DESCRIPTION = (
    "Too many requests for this credential (or, on login, this address or username); see Retry-After."
)


class JsonBodySchema(AutoSchema):
    """The schema says what the views enforce:
    - a body is required where json_object_required reads one (a JSON object, `{}` when no field is
      needed), even where every field is optional;
    - every operation of a throttled view (any DRF throttle: API_RATE_LIMIT, NOTICE_API_RATE_LIMIT,
      the login limits, ...) may answer 429 in the error shape with Retry-After. Added here, from the
      view's own throttles, so no view has to remember it; a view's own 429 description is kept."""

    def _get_request_body(self, *args, **kwargs):
        body = super()._get_request_body(*args, **kwargs)
        if body is not None and self.method in BODY_METHODS:
            body["required"] = True
        return body

    def _map_basic_serializer(self, serializer, direction):
        """A request serializer's cross-field rules that JSON Schema can state, stated: its
        `exactly_one_of` groups (oneOf of their `required`) and `at_most_one_of` groups (not all
        required), so a schema-valid request is never refused for them."""
        schema = super()._map_basic_serializer(serializer, direction)
        rules: list[dict] = [
            {"oneOf": [{"required": [name]} for name in names]} for names in getattr(serializer, "exactly_one_of", ())
        ]
        rules += [{"not": {"required": list(names)}} for names in getattr(serializer, "at_most_one_of", ())]
        if len(rules) == 1:
            schema.update(rules[0])
        elif rules:
            schema["allOf"] = rules
        return schema

    def _is_throttled(self) -> bool:
        return bool(self.view.get_throttles())

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction=direction)
        if direction == "response" and self._is_throttled() and THROTTLED_STATUS not in responses:
            responses[THROTTLED_STATUS] = self._get_response_for_code(
                OpenApiResponse(ErrorSerializer, description=THROTTLED_DESCRIPTION), THROTTLED_STATUS
            )
        return responses

    def _get_response_headers_for_code(self, status_code, direction="response"):
        headers = super()._get_response_headers_for_code(status_code, direction)
        if str(status_code) == THROTTLED_STATUS:
            headers = {**RETRY_AFTER_HEADER, **headers}
        return headers


# No docstrings on these views: drf-spectacular would show a base class's docstring as the
# description of every operation built on it.


# A view of the API that needs no channel credentials (login, token refresh, the JSON 404).
class JsonAPIView(APIView):
    content_negotiation_class = JsonOnlyNegotiation
    parser_classes = [JsonObjectParser]
    schema = JsonBodySchema()
    # Methods whose body must be a JSON object (json_object_required).
    json_body_methods: frozenset[str] = BODY_METHODS

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.method in self.json_body_methods:
            json_object_required(request)

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
