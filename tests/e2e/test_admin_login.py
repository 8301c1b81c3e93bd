"""The smallest real-browser walk: an operator logs into the admin and sees the index."""

import pytest

from tests.factories import OperatorFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_operator_logs_into_the_admin(live_server, page, screenshot):
    from tests.factories import DEFAULT_PASSWORD

    operator = OperatorFactory()
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", operator.username)
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    content = page.content()
    assert "Refunds at a glance" in content and "Violet refunds back office" in content  # the branded header
    screenshot("admin-index-login")
