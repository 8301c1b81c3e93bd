"""Fixtures for outbound webhooks: a real local HTTP receiver, channels with endpoints pointing at
it, and helpers that run what commits enqueue (tasks are eager in tests) and move time forward."""

import datetime as dt

import pytest
from django.utils import timezone

from notifications import services
from notifications.models import DeliveryStatus, WebhookDelivery
from refunds.models import RefundSource
from refunds.services import refund_record
from tests.notifications.receiver import WebhookReceiver
from tests.platforms.conftest import shopify_store  # noqa: F401 - fixture
from tests.refunds.admin.conftest import (  # noqa: F401 - fixtures
    operator,
    operator_client,
    refund_groups,
    viewer,
    viewer_client,
)
from tests.refunds.api.conftest import api_client, channel, make_channel, other_channel  # noqa: F401 - fixtures
from tests.reliability.conftest import start_worker  # noqa: F401 - fixture
from tests.world import funded_bag


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    # DEBUG allows registering http:// endpoints (the local receiver); tests of the production rules
    # switch it off. Sending to a loopback address is refused unless explicitly allowed, whatever
    # DEBUG says: the local receiver's address is allowed here. A short timeout keeps the
    # "endpoint too slow" tests quick.
    settings.DEBUG = True
    settings.OUTBOUND_ALLOWED_PRIVATE_NETWORKS = ["127.0.0.1/32"]
    settings.NOTIFICATIONS_WEBHOOK_TIMEOUT_SECONDS = 1.0


@pytest.fixture
def receiver():
    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def run_commits(django_capture_on_commit_callbacks):
    """`with run_commits():` runs what the block's commits enqueue (deliveries, processing), as a
    real commit would; callbacks added by those callbacks run too."""

    def context():
        return django_capture_on_commit_callbacks(execute=True)

    return context


def register(app, url: str, event_types=()):
    registered = services.webhook_endpoint_register(app=app, url=url, event_types=list(event_types), actor="test")
    return registered.endpoint, registered.signing_secret


def record_refund(bag, **kwargs):
    kwargs.setdefault("source", RefundSource.CHANNEL_API)
    kwargs.setdefault("actor", "test")
    return refund_record(bag=bag, **kwargs).refund


def make_due(**filters) -> int:
    """Time travel: waiting deliveries (matching `filters`) become due now."""
    return WebhookDelivery.objects.filter(status=DeliveryStatus.CREATED, **filters).update(
        next_attempt_at=timezone.now() - dt.timedelta(seconds=1), enqueued_at=None
    )


@pytest.fixture
def relay(run_commits):
    """Run the relay as beat would (after time travel), and whatever it hands to the broker."""

    def run():
        with run_commits():
            return services.deliveries_relay()

    return run


@pytest.fixture
def hooked(db, channel, receiver):  # noqa: F811 - pytest fixture
    """A channel with one endpoint (every event type) at the receiver, and a funded bag of its own."""
    endpoint, secret = register(channel.app, receiver.url)
    bag = funded_bag(app=channel.app)
    return Hooked(channel=channel, endpoint=endpoint, secret=secret, bag=bag, receiver=receiver)


class Hooked:
    def __init__(self, *, channel, endpoint, secret, bag, receiver):  # noqa: F811
        self.channel = channel
        self.app = channel.app
        self.endpoint = endpoint
        self.secret = secret
        self.bag = bag
        self.receiver = receiver


__all__ = ["funded_bag", "make_channel"]
