"""Object-level authorization (fault matrix row 36): every portal page and action reaches data only
through portal.selectors, scoped to the user's merchants. Another merchant's ids are 404."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.urls import reverse

from platforms.models import MerchantApiKey, Platform, StoreConnection
from portal import selectors as scoped
from portal.keys import api_key_create
from refunds.models import Refund
from tests.factories import (
    BagFactory,
    MerchantFactory,
    MerchantMembershipFactory,
    OperatorFactory,
    OrderSkuFactory,
    RefundFactory,
    StoreConnectionFactory,
    UserFactory,
)
from tests.portal.conftest import logged_in, portal_user, sfcc_merchant

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    """Two SFCC Option 2 merchants, each with a user, a bag with a SKU, a refund and an API key."""
    data = {}
    for name in ("mine", "theirs"):
        merchant = sfcc_merchant(name=f"{name} store")
        bag = BagFactory(merchant=merchant, external_id=f"{name}-order")
        sku = OrderSkuFactory(bag=bag, price=10000)
        refund = RefundFactory(bag=bag, external_id=f"{name}-refund")
        key = api_key_create(merchant=merchant, name=f"{name} key").api_key
        data[name] = {"merchant": merchant, "bag": bag, "sku": sku, "refund": refund, "key": key}
    data["user"] = portal_user(data["mine"]["merchant"])
    return data


def other_ids_urls(theirs):
    return [
        ("get", reverse("portal:order_detail", args=[theirs["bag"].pk])),
        ("get", reverse("portal:refund_report", args=[theirs["bag"].pk])),
        ("post", reverse("portal:refund_report", args=[theirs["bag"].pk])),
        ("get", reverse("portal:refund_detail", args=[theirs["refund"].pk])),
        ("post", reverse("portal:api_key_revoke", args=[theirs["key"].pk])),
    ]


def test_another_merchants_ids_are_404(world):
    client = logged_in(world["user"])
    theirs = world["theirs"]
    for method, url in other_ids_urls(theirs):
        data = {f"qty_{theirs['sku'].pk}": "1", "reference": "X1", "reason_code": "OTHER", "form_token": "t" * 24}
        response = getattr(client, method)(url, data) if method == "post" else client.get(url)
        assert response.status_code == 404, (method, url)
    # Nothing happened to their data.
    assert Refund.objects.filter(bag=theirs["bag"]).count() == 1
    assert MerchantApiKey.objects.get(pk=theirs["key"].pk).revoked_at is None


def test_ids_that_do_not_exist_are_the_same_404(world):
    client = logged_in(world["user"])
    for url in (
        reverse("portal:order_detail", args=[999999]),
        reverse("portal:refund_detail", args=[999999]),
        reverse("portal:refund_report", args=[2**63 + 5]),
        "/portal/orders/-1/",
    ):
        assert client.get(url).status_code == 404, url


def test_own_ids_are_200(world):
    client = logged_in(world["user"])
    mine = world["mine"]
    assert client.get(reverse("portal:order_detail", args=[mine["bag"].pk])).status_code == 200
    assert client.get(reverse("portal:refund_report", args=[mine["bag"].pk])).status_code == 200
    assert client.get(reverse("portal:refund_detail", args=[mine["refund"].pk])).status_code == 200


def test_lists_show_only_own_data(world):
    client = logged_in(world["user"])
    for name in ("home", "orders", "refunds", "api_keys"):
        page = client.get(reverse(f"portal:{name}")).content.decode()
        assert "theirs" not in page, name
    home = client.get(reverse("portal:home")).content.decode()
    assert "mine-order" in home and "mine-refund" in home
    assert "mine key" in client.get(reverse("portal:api_keys")).content.decode()


def test_a_user_of_two_merchants_sees_both_and_no_third():
    first, second, third = MerchantFactory(name="First"), MerchantFactory(name="Second"), MerchantFactory(name="Third")
    user = portal_user(first)
    MerchantMembershipFactory(merchant=second, user=user)
    bags = [BagFactory(merchant=merchant) for merchant in (first, second, third)]
    assert set(scoped.merchants_for_user(user)) == {first, second}
    assert set(scoped.bags_for_user(user)) == set(bags[:2])
    with pytest.raises(scoped.Http404):
        scoped.bag_get_for_user(user, bags[2].pk)


def test_inactive_and_anonymous_users_see_nothing(world):

    user = world["user"]
    user.is_active = False
    user.save()
    assert not scoped.merchants_for_user(user).exists()
    assert not scoped.refunds_for_user(AnonymousUser()).exists()
    assert not scoped.bags_for_user(None).exists()


def test_another_merchants_wix_store_cannot_be_connected():
    mine, theirs = MerchantFactory(platform=Platform.WIX), MerchantFactory(platform=Platform.WIX)
    StoreConnectionFactory(merchant=theirs, credentials={"api_key": "theirs"})
    client = logged_in(portal_user(mine))
    response = client.post(
        reverse("portal:connect_wix"),
        {
            "merchant": theirs.pk,
            "api_key": "k" * 30,
            "account_id": "0f1e2d3c-4b5a-4968-8778-695a4b3c2d1e",
            "site_id": "83799f16-12a9-4803-963e-ed6fed6c7e4d",
        },
    )
    assert response.status_code == 400
    assert "Select a valid choice" in str(response.context["form"].errors["merchant"])
    assert StoreConnection.objects.get(merchant=theirs).credentials == {"api_key": "theirs"}


# --- login required, and users without a merchant ------------------------------------------------

PAGES = ["home", "orders", "refunds", "api_keys", "connect_wix"]


def page_urls(world):
    return [reverse(f"portal:{name}") for name in PAGES] + [
        reverse("portal:order_detail", args=[world["mine"]["bag"].pk]),
        reverse("portal:refund_report", args=[world["mine"]["bag"].pk]),
        reverse("portal:refund_detail", args=[world["mine"]["refund"].pk]),
        reverse("portal:api_key_revoke", args=[world["mine"]["key"].pk]),
    ]


def test_every_page_requires_a_login(client, world):
    for url in page_urls(world):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(f"{reverse('portal:login')}?next="), url


@pytest.mark.parametrize("user_factory", [OperatorFactory, UserFactory])
def test_a_user_without_a_merchant_gets_a_clear_page(world, user_factory):
    client = logged_in(user_factory())
    for url in page_urls(world):
        response = client.get(url)
        assert response.status_code == 403, url
        assert "No merchant account" in response.content.decode()
    response = client.get(reverse("portal:home"))
    assert "does not act for any merchant" in response.content.decode()
