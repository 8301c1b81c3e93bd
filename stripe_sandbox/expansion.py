"""`expand[]`, one mechanism for every object: a rendered object's expandable field holds an id, and a
path such as `charge`, `latest_charge.balance_transaction` or (on lists) `data.charge` swaps that id
for the object, recursively, as Stripe does. A path the sandbox cannot expand is refused before the
endpoint runs, with Stripe's error, rather than silently ignored.
"""

from collections.abc import Callable

from . import objects
from .errors import StripeFailure
from .models import (
    SandboxAccount,
    SandboxBalanceTransaction,
    SandboxPaymentIntent,
    SandboxRefund,
    SandboxTransfer,
    SandboxTransferReversal,
)

# object type -> expandable field -> the type of object it holds ("source": decided by the id's prefix).
EXPANDABLE: dict[str, dict[str, str]] = {
    "payment_intent": {"latest_charge": "charge"},
    "charge": {"payment_intent": "payment_intent", "balance_transaction": "balance_transaction"},
    "refund": {
        "charge": "charge",
        "payment_intent": "payment_intent",
        "balance_transaction": "balance_transaction",
        "failure_balance_transaction": "balance_transaction",
    },
    "transfer": {
        "balance_transaction": "balance_transaction",
        "destination": "account",
        "source_transaction": "charge",
    },
    "transfer_reversal": {"transfer": "transfer", "balance_transaction": "balance_transaction"},
    "balance_transaction": {"source": "source"},
    "dispute": {"charge": "charge", "payment_intent": "payment_intent"},
}
# Stripe allows at most four levels of expansion.
MAX_DEPTH = 4
_SOURCE_PREFIXES = {"ch_": "charge", "re_": "refund", "tr_": "transfer", "trr_": "transfer_reversal"}


def _cannot_expand(path: str) -> StripeFailure:
    return StripeFailure(
        400, "invalid_request_error", f"This property cannot be expanded ({path}).", param="expand", stored=False
    )


def check(paths: list[str], renders: str) -> None:
    """Refuse paths that do not name expandable fields of what the endpoint returns ("list:refund" for a list)."""
    for path in paths:
        parts = path.split(".")
        object_type = renders
        if renders.startswith("list:"):
            if parts[0] != "data" or len(parts) == 1:
                raise _cannot_expand(path)
            parts, object_type = parts[1:], renders.removeprefix("list:")
        if len(parts) > MAX_DEPTH:
            raise _cannot_expand(path)
        for part in parts:
            target = EXPANDABLE.get(object_type, {}).get(part)
            if target is None:
                raise _cannot_expand(path)
            object_type = target


def expand(body: dict, paths: list[str]) -> dict:
    """`body` with every path expanded in place (paths already passed `check`)."""
    for path in paths:
        _expand_path(body, path.split("."))
    return body


def _expand_path(node, parts: list[str]) -> None:
    if not isinstance(node, dict) or not parts:
        return
    if node.get("object") == "list" and parts[0] == "data":
        for item in node.get("data", []):
            _expand_path(item, parts[1:])
        return
    field, rest = parts[0], parts[1:]
    value = node.get(field)
    if isinstance(value, str):
        target = EXPANDABLE.get(node.get("object", ""), {}).get(field, "")
        resolved = render_by_id(target, value)
        if resolved is not None:
            node[field] = value = resolved
    _expand_path(value, rest)


def render_by_id(object_type: str, stripe_id: str) -> dict | None:
    """The current rendering of the object `stripe_id` of `object_type` (None when the sandbox has none)."""
    if object_type == "source":
        object_type = next((kind for prefix, kind in _SOURCE_PREFIXES.items() if stripe_id.startswith(prefix)), "")
    render = _RENDERERS.get(object_type)
    return render(stripe_id) if render else None


def _renderers() -> dict[str, Callable[[str], dict | None]]:
    def charge(stripe_id):
        pi = SandboxPaymentIntent.objects.filter(charge_id=stripe_id).first()
        return objects.charge(pi) if pi else None

    def payment_intent(stripe_id):
        pi = SandboxPaymentIntent.objects.filter(stripe_id=stripe_id).first()
        return objects.payment_intent(pi) if pi else None

    def refund(stripe_id):
        rf = SandboxRefund.objects.select_related("payment_intent").filter(stripe_id=stripe_id).first()
        return objects.refund(rf) if rf else None

    def transfer(stripe_id):
        tr = SandboxTransfer.objects.select_related("destination").filter(stripe_id=stripe_id).first()
        return objects.transfer(tr) if tr else None

    def transfer_reversal(stripe_id):
        reversal = SandboxTransferReversal.objects.select_related("transfer").filter(stripe_id=stripe_id).first()
        return objects.transfer_reversal(reversal) if reversal else None

    def balance_transaction(stripe_id):
        txn = SandboxBalanceTransaction.objects.filter(stripe_id=stripe_id).first()
        return objects.balance_transaction(txn) if txn else None

    def account(stripe_id):
        acct = SandboxAccount.objects.filter(stripe_id=stripe_id, is_platform=False).first()
        return objects.account(acct) if acct else None

    return {
        "account": account,
        "charge": charge,
        "payment_intent": payment_intent,
        "refund": refund,
        "transfer": transfer,
        "transfer_reversal": transfer_reversal,
        "balance_transaction": balance_transaction,
    }


_RENDERERS = _renderers()
