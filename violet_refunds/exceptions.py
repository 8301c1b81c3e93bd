"""One error family for the whole application, and the JSON shape every API error takes.

Services raise ApplicationError subclasses with a stable machine-readable `error_code`; the API
handler turns them (and DRF's own exceptions) into
`{"status", "message", "error_code", "timestamp", "errors"?}` with the right 4xx status.
"""

import time

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_default_handler


class ApplicationError(Exception):
    status_code = 400
    error_code: str | int = "application_error"  # Violet's documented codes are a few numbers too

    def __init__(self, message: str, *, error_code: str | int | None = None, field_errors=None, extra=None):
        super().__init__(message)
        self.message = message
        if error_code:
            self.error_code = error_code
        self.field_errors = field_errors or {}
        self.extra = extra or {}


class TemporarilyUnavailable(ApplicationError):
    """503: the outcome could not be established now and nothing was recorded; the same request may
    be sent again after `retry_after` seconds (the `Retry-After` header)."""

    status_code = 503
    error_code = "temporarily_unavailable"

    def __init__(self, message: str, *, retry_after: int, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = max(int(retry_after), 1)
        self.headers = {"Retry-After": str(self.retry_after)}


class ValidationFailed(ApplicationError):
    status_code = 400
    error_code = "validation_failed"


class RequestUnprocessable(ValidationFailed):
    """A well-formed request (valid against the API's schema) that the current state refuses: more
    than is left on the bag, a line of another bag, a currency not the bag's, nothing to refund.
    422 (RFC 9110: understood, cannot be processed), with the same `validation_failed` code and field
    errors as a 400, so a client tells "fix the request's shape" (400) from "not possible for this
    order now" (422)."""

    status_code = 422


class NotFound(ApplicationError):
    status_code = 404
    error_code = "not_found"


class Conflict(ApplicationError):
    status_code = 409
    error_code = "conflict"


class InvalidTransition(ApplicationError):
    """An action that the object's current status does not allow (retry a COMPLETED refund...)."""

    status_code = 409
    error_code = "invalid_status"


class AuthenticationFailed(ApplicationError):
    status_code = 401
    error_code = "authentication_failed"


class BodyInvalid(ApplicationError):
    """The request body is not what the endpoint reads: a JSON object (empty, malformed, not an
    object, nested too deeply)."""

    status_code = 400
    error_code = "invalid_body"


class PayloadTooLarge(ApplicationError):
    status_code = 413
    error_code = "payload_too_large"


class UnsupportedMediaType(ApplicationError):
    status_code = 415
    error_code = "unsupported_media_type"


def request_body_error(exc: BaseException) -> ApplicationError | None:
    """The one translation of a body that could not be read into the API's errors, or None.

    Parse errors (DRF's ParseError, a JSON decoder error), RecursionError (JSON nested deeper than
    Python's parser goes), Django's RequestDataTooBig and an unsupported content type: used by the
    API handler below (channel API, merchant notice API) and by the platform webhook receivers.
    """
    if isinstance(exc, BodyInvalid | PayloadTooLarge | UnsupportedMediaType):
        return exc
    if isinstance(exc, RecursionError):
        return BodyInvalid("The body is nested too deeply.")
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge("The body is too large.")
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):
        return UnsupportedMediaType("Send the body as JSON (Content-Type: application/json).")
    if isinstance(exc, drf_exceptions.ParseError):
        return BodyInvalid(str(exc.detail))
    return None


def error_body(status: int, message: str, error_code, field_errors=None) -> dict:
    body = {
        "status": status,
        "message": message,
        "error_code": error_code,
        "timestamp": int(time.time() * 1000),
    }
    if field_errors:
        body["errors"] = field_errors
    return body


def _flatten_drf_detail(detail):
    if isinstance(detail, dict):
        return {key: _flatten_drf_detail(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten_drf_detail(item) for item in detail]
    return str(detail)


def api_exception_handler(exc, context):
    """DRF exception handler: every error under /v1/ is JSON with the same keys."""
    if not isinstance(exc, ApplicationError | drf_exceptions.APIException) or isinstance(
        exc, drf_exceptions.ParseError | drf_exceptions.UnsupportedMediaType
    ):
        exc = request_body_error(exc) or exc
    if isinstance(exc, ApplicationError):
        body = error_body(exc.status_code, exc.message, exc.error_code, exc.field_errors)
        body.update(exc.extra)
        return Response(body, status=exc.status_code, headers=getattr(exc, "headers", None))
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    response = drf_default_handler(exc, context)
    if response is None:
        return None  # a real bug: let Django's 500 handling log it
    if isinstance(exc, drf_exceptions.ValidationError):
        fields = _flatten_drf_detail(exc.detail)
        if not isinstance(fields, dict):
            fields = {"non_field_errors": fields}
        response.data = error_body(response.status_code, "The request is invalid.", "validation_failed", fields)
    else:
        code = getattr(exc, "default_code", "error")
        detail = exc.detail if hasattr(exc, "detail") else str(exc)
        response.data = error_body(response.status_code, str(detail), code)
    return response
