"""Fault matrix row 25 on PostgreSQL (real row locks; SQLite's shared in-memory test database refuses
concurrent writers instead of queueing them): the same form posted twice at the same moment records
one refund, and both posts land on its status page. The sequential double submit runs on both
databases in test_refund_report.py."""

import threading

import pytest
from django.db import connection
from django.urls import reverse

from refunds.models import Refund, RefundStatus
from tests.portal.conftest import logged_in, notice_bag, portal_user
from tests.portal.test_refund_report import notice_data, report_url

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_two_concurrent_posts_of_the_same_form_record_one_refund():
    bag = notice_bag()
    user = portal_user(bag.merchant)
    data = notice_data(bag, logged_in(user))
    clients = [logged_in(user), logged_in(user)]
    barrier = threading.Barrier(len(clients))
    responses, errors = [], []

    def post(client):
        try:
            barrier.wait(timeout=10)
            responses.append(client.post(report_url(bag), data))
        except Exception as exc:  # surfaced below, in the test thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    refund = Refund.objects.get(bag=bag)
    assert [response.status_code for response in responses] == [302, 302]
    assert {response["Location"] for response in responses} == {reverse("portal:refund_detail", args=[refund.pk])}
    assert refund.status == RefundStatus.COMPLETED
    assert bag.skus.order_by("pk")[0].quantity_refunded == 1
