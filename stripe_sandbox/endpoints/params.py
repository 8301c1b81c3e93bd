"""Parameter validation shared by the endpoints: failures here are never stored under the idempotency key."""

import re

from ..errors import invalid_param, missing_param, no_such

MAX_AMOUNT = 99_999_999


def known(params: dict, allowed: set[str]) -> None:
    for name in params:
        if name not in allowed:
            raise invalid_param(f"Received unknown parameter: {name}", param=name, code="parameter_unknown")


def amount(params: dict, name: str = "amount", *, required: bool = True) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise missing_param(name)
        return None
    if not isinstance(raw, str) or not re.fullmatch(r"-?\d+", raw):
        raise invalid_param(f"Invalid integer: {raw}", param=name, code="parameter_invalid_integer")
    value = int(raw)
    if value < 1:
        raise invalid_param(
            "This value must be greater than or equal to 1.", param=name, code="parameter_invalid_integer"
        )
    if value > MAX_AMOUNT:
        raise invalid_param(f"Amount must be no more than {MAX_AMOUNT}.", param=name, code="amount_too_large")
    return value


def currency(params: dict) -> str:
    raw = params.get("currency")
    if not raw:
        raise missing_param("currency")
    if not isinstance(raw, str) or not re.fullmatch(r"[A-Za-z]{3}", raw):
        raise invalid_param(f"Invalid currency: {raw}.", param="currency", code="parameter_invalid")
    return raw.lower()


def string(params: dict, name: str, *, required: bool = False, max_length: int = 5000) -> str:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise missing_param(name)
        return ""
    if not isinstance(raw, str):
        raise invalid_param(f"Invalid string: {name}.", param=name, code="parameter_invalid")
    if len(raw) > max_length:
        raise invalid_param(
            f"Invalid string: {name} must be at most {max_length} characters.",
            param=name,
            code="parameter_invalid_string_too_long",
        )
    return raw


def boolean(params: dict, name: str) -> bool:
    raw = params.get(name)
    if raw is None or raw == "":
        return False
    if raw not in ("true", "false"):
        raise invalid_param(f"Invalid boolean: {raw}", param=name, code="parameter_invalid")
    return raw == "true"


def metadata(params: dict) -> dict:
    raw = params.get("metadata")
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, dict):
        raise invalid_param("Invalid object", param="metadata", code="parameter_invalid")
    if len(raw) > 50:
        raise invalid_param("Metadata can have at most 50 keys.", param="metadata", code="parameter_invalid")
    metadata = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            raise invalid_param(f"Invalid metadata[{key}].", param=f"metadata[{key}]", code="parameter_invalid")
        if len(key) > 40 or len(value) > 500:
            raise invalid_param(
                "Metadata keys are at most 40 characters and values at most 500.",
                param=f"metadata[{key}]",
                code="parameter_invalid",
            )
        if value != "":  # an empty value unsets the key
            metadata[key] = value
    return metadata


def expand(params: dict) -> list[str]:
    raw = params.get("expand")
    if raw is None or raw == "":
        return []
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise invalid_param("Invalid array", param="expand", code="parameter_invalid")
    return raw


def list_params(params: dict) -> dict:
    limit = 10
    if params.get("limit") not in (None, ""):
        raw = params["limit"]
        if not isinstance(raw, str) or not raw.isdigit() or not 1 <= int(raw) <= 100:
            raise invalid_param(
                "This value must be between 1 and 100.", param="limit", code="parameter_invalid_integer"
            )
        limit = int(raw)
    return {
        "limit": limit,
        "starting_after": string(params, "starting_after"),
        "ending_before": string(params, "ending_before"),
        "expand": expand(params),
    }


def only_expand(params: dict) -> dict:
    known(params, {"expand"})
    return {"expand": expand(params)}


def validate_list(params: dict) -> dict:
    known(params, {"limit", "starting_after", "ending_before", "expand"})
    return list_params(params)


def cursor(queryset, cursor_id: str, param: str):
    if not cursor_id:
        return None
    item = queryset.filter(stripe_id=cursor_id).first()
    if item is None:
        raise no_such("object", cursor_id, param=param, status=400)
    return item


def money(amount: int, currency: str) -> str:
    text = f"{amount // 100}.{amount % 100:02d}"
    return f"${text}" if currency == "usd" else f"{text} {currency.upper()}"
