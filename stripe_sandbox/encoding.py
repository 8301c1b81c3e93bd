"""Decode the SDK's form-encoded parameters (`metadata[k]=v`, `expand[0]=x`) into nested values."""

import hashlib
import json
import re
from urllib.parse import parse_qsl

from .errors import invalid_param

_KEY_PART = re.compile(r"\[([^\[\]]*)\]")


def decode_params(encoded: str | bytes | None) -> dict:
    """`a[b][c]=1&l[0]=x` -> {"a": {"b": {"c": "1"}}, "l": ["x"]}; values stay strings, as on the wire."""
    if not encoded:
        return {}
    if isinstance(encoded, bytes):
        encoded = encoded.decode("utf-8")
    root: dict = {}
    for raw_key, value in parse_qsl(encoded, keep_blank_values=True):
        head, _, rest = raw_key.partition("[")
        parts = [head, *_KEY_PART.findall("[" + rest)] if rest else [head]
        _assign(root, parts, value, raw_key)
    return _lists_from_indexes(root)


def _assign(node: dict, parts: list[str], value: str, raw_key: str) -> None:
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise invalid_param(f"Invalid value for {raw_key}.", param=raw_key, code="parameter_invalid")
        node = child
    if isinstance(node.get(parts[-1]), dict):
        raise invalid_param(f"Invalid value for {raw_key}.", param=raw_key, code="parameter_invalid")
    node[parts[-1]] = value


def _lists_from_indexes(value, *, is_map: bool = False):
    """Turn {"0": a, "1": b} (how arrays travel) back into [a, b]; metadata stays a map of strings."""
    if not isinstance(value, dict):
        return value
    converted = {key: _lists_from_indexes(item, is_map=key == "metadata") for key, item in value.items()}
    if is_map:
        return converted
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    if set(converted) == {""}:  # `expand[]=x`
        return [converted[""]]
    return converted


def fingerprint(method: str, path: str, params: dict) -> str:
    canonical = json.dumps([method.upper(), path, params], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
