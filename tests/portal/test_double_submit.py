"""Fault matrix row 25 on PostgreSQL (real row locks; SQLite's shared in-memory test database refuses
concurrent writers instead of queueing them): the same form posted twice at the same moment records
one refund, and both posts land on its status page. The sequential double submit runs on both
databases in test_refund_report.py."""

import functools

import pytest
from django.urls import reverse

from refunds.models import Refund, RefundStatus
from tests.parallel import run_in_parallel
from tests.portal.conftest import logged_in, notice_bag, portal_user
from tests.portal.test_refund_report import notice_data, report_url

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_two_concurrent_posts_of_the_same_form_record_one_refund():
    bag = notice_bag()
    user = portal_user(bag.merchant)
    data = notice_data(bag, logged_in(user))
    clients = [logged_in(user), logged_in(user)]
    responses = run_in_parallel(*(functools.partial(client.post, report_url(bag), data) for client in clients))
    refund = Refund.objects.get(bag=bag)
    assert [response.status_code for response in responses] == [302, 302]
    assert {response["Location"] for response in responses} == {reverse("portal:refund_detail", args=[refund.pk])}
    assert refund.status == RefundStatus.COMPLETED
    assert bag.skus.order_by("pk")[0].quantity_refunded == 1
