"""Stripe-shaped API failures raised inside the sandbox and rendered as `{"error": {...}}` bodies."""


class StripeFailure(Exception):
    """An API error response. `stored` says whether Stripe keeps it under the idempotency key.

    Stripe stores the outcome once the endpoint starts executing; a request that fails parameter
    validation (`stored=False`) stores nothing, so it can be retried with the same key after a fix.
    """

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        stored: bool = True,
        extra: dict | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.code = code
        self.param = param
        self.stored = stored
        self.extra = extra or {}

    def body(self, request_id: str) -> dict:
        error = {"type": self.error_type, "message": self.message, "request_log_url": _log_url(request_id)}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        error.update(self.extra)
        return {"error": error}


def _log_url(request_id: str) -> str:
    return f"https://dashboard.stripe.com/test/logs/{request_id}"


def invalid_param(message: str, *, param: str, code: str = "parameter_invalid_empty") -> StripeFailure:
    return StripeFailure(400, "invalid_request_error", message, code=code, param=param, stored=False)


def missing_param(param: str) -> StripeFailure:
    return StripeFailure(
        400,
        "invalid_request_error",
        f"Missing required param: {param}.",
        code="parameter_missing",
        param=param,
        stored=False,
    )


def no_such(resource: str, object_id: str, *, param: str | None = None, status: int = 404) -> StripeFailure:
    return StripeFailure(
        status,
        "invalid_request_error",
        f"No such {resource}: '{object_id}'",
        code="resource_missing",
        param=param,
    )


def invalid_request(message: str, *, code: str | None = None, param: str | None = None) -> StripeFailure:
    return StripeFailure(400, "invalid_request_error", message, code=code, param=param)


def api_error(status: int = 500) -> StripeFailure:
    return StripeFailure(
        status,
        "api_error",
        "An unknown error occurred. Please try again later or contact support if the problem persists.",
    )


def rate_limited() -> StripeFailure:
    return StripeFailure(
        429,
        "invalid_request_error",
        "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
        code="rate_limit",
        stored=False,
    )


def key_in_use(key: str) -> StripeFailure:
    return StripeFailure(
        409,
        "invalid_request_error",
        "There is currently another in-progress request using this Idempotent Key (that probably means "
        f"you submitted twice, and the other request is still going through): {key}. "
        "Please try again later.",
        code="idempotency_key_in_use",
        stored=False,
    )


def key_reused(key: str) -> StripeFailure:
    return StripeFailure(
        400,
        "idempotency_error",
        "Keys for idempotent requests can only be used with the same parameters they were first used "
        f"with. Try using a key other than '{key}' if you meant to execute a different request.",
        stored=False,
    )
