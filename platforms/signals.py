"""Bag saves seen from the platforms side (refunds never imports platforms, so it cannot call us).

A bag saved with a platform order id may be the order an inbound event is awaiting
(InboundEvent.Status.AWAITING_ORDER): after the commit, `services.bag_appeared` checks (one indexed
query) and enqueues their processing. The receiver only schedules; the work is in the service, and
beat's `sweep_events_awaiting_order` catches bags this hook never sees (bulk inserts, `update()`).
"""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from platforms import services
from refunds.models import Bag


@receiver(post_save, sender=Bag, dispatch_uid="platforms.bag_saved_awaiting_events")
def bag_saved(sender, instance: Bag, created: bool, update_fields=None, **kwargs) -> None:
    if not instance.external_id:
        return
    if not created and update_fields is not None and "external_id" not in update_fields:
        return  # status and totals changes (the refund engine's saves) name no new order

    bag_id, merchant_id, external_id = instance.pk, instance.merchant_id, instance.external_id
    transaction.on_commit(
        lambda: services.bag_appeared(bag_id=bag_id, merchant_id=merchant_id, external_id=external_id)
    )
