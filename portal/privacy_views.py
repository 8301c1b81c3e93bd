"""Portal pages of the privacy work (issue #22): disconnect a store (asks first; owners only) and
the customer data requests Shopify forwarded, with a download of what we hold (JSON)."""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from platforms import selectors
from platforms.models import MerchantMembership, PrivacyRequest, StoreConnection
from platforms.privacy.disconnect import store_connection_disconnect
from portal.views import _actor, portal_page


def _owned_connection(request, merchant_id: int) -> StoreConnection:
    merchant = next((m for m in request.portal_merchants if m.pk == merchant_id), None)
    owner = MerchantMembership.objects.filter(
        merchant_id=merchant_id, user=request.user, role=MerchantMembership.Role.OWNER
    ).exists()
    connection = getattr(merchant, "connection", None) if merchant is not None else None
    if connection is None or not owner:
        raise Http404("No such store connection.")
    return connection


@portal_page
@require_http_methods(["GET", "POST"])
def connection_disconnect(request, merchant_id: int):
    connection = _owned_connection(request, merchant_id)
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        if store_connection_disconnect(
            connection=connection, actor=_actor(request), reason="disconnected in the portal"
        ):
            messages.success(request, f"{connection.merchant.name} is disconnected: we no longer hold its credentials.")
        else:
            messages.info(request, f"{connection.merchant.name} was already disconnected.")
        return redirect("portal:home")
    return render(request, "portal/disconnect_confirm.html", {"connection": connection})


@portal_page
def privacy_requests(request):
    requests = selectors.privacy_data_requests_for_merchants(m.pk for m in request.portal_merchants)
    return render(request, "portal/privacy_requests.html", {"privacy_requests": requests})


@portal_page
def privacy_request_download(request, request_id: int):
    privacy_request = (
        selectors.privacy_data_requests_for_merchants(m.pk for m in request.portal_merchants)
        .filter(pk=request_id, state=PrivacyRequest.State.DONE)
        .exclude(export=None)
        .first()
    )
    if privacy_request is None:
        raise Http404("No such data request.")
    response = HttpResponse(
        json.dumps(privacy_request.export, indent=2, ensure_ascii=False), content_type="application/json"
    )
    response["Content-Disposition"] = f'attachment; filename="data-request-{privacy_request.pk}.json"'
    return response
