"""The call an endpoint executes: where it came from, and the business faults it took."""

from dataclasses import dataclass, field

from .. import faults
from ..models import SandboxAccount, SandboxFault


@dataclass
class Call:
    method: str
    path: str
    path_args: dict
    account: SandboxAccount | None  # the Stripe-Account header's connected account
    taken_faults: list = field(default_factory=list)
    request_id: str | None = None
    idempotency_key: str | None = None

    def take(self, *kinds: str) -> SandboxFault | None:
        """Consume the oldest pending business fault of one of `kinds` for this call, if any."""
        taken = faults.take(list(kinds), method=self.method, path=self.path)
        if taken is not None:
            self.taken_faults.append(taken.kind)
        return taken

    def fault(self, kind: str) -> bool:
        """Consume a business fault for this call; True when one was pending."""
        return self.take(kind) is not None

    @property
    def request(self) -> tuple[str | None, str | None]:
        """The Event `request` of what this call changes: its request id and idempotency key."""
        return self.request_id, self.idempotency_key
