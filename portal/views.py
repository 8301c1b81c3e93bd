"""Merchant portal views: thin callers of portal.selectors (every read, scoped to the
logged-in user's merchants) and of the services (refund notices, API keys, store connection).

Every page requires a login; a user who acts for no merchant sees one clear page instead. An id of
another merchant's order, refund or key is a 404, exactly like an id that does not exist.
"""

from __future__ import annotations

import logging
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from platforms.clients.base import PlatformUnavailable
from platforms.clients.wix import WixCredentialsInvalid
from platforms.connect import clean_pasted_value, connect_store
from platforms.models import Platform
from platforms.oms.connect import oms_connect, oms_disconnect
from portal import presenters
from portal import selectors as scoped
from portal.forms import (
    ApiKeyCreateForm,
    ConnectOmsForm,
    ConnectWixForm,
    DisconnectOmsForm,
    PortalLoginForm,
    PortalPasswordResetForm,
    PortalSetPasswordForm,
    RefundNoticeForm,
    new_form_token,
)
from portal.keys import api_key_create, api_key_revoke
from portal.redirects import channel_redirect_app, channel_redirect_url
from refunds.amounts import bag_refundable_remaining
from refunds.models import RefundStatus
from refunds.services import RequestMismatch
from refunds.services.notices import (
    REASON_CODE_LABELS,
    RefundNoticesNotEnabled,
    refund_notice_record,
    remaining_before,
)
from violet_refunds.crypto import CredentialsUnreadable, decrypt_str, encrypt_str
from violet_refunds.exceptions import InvalidTransition, ValidationFailed
from violet_refunds.money import currency_exponent, format_major

logger = logging.getLogger(__name__)

RECENT = 10
PAGE_SIZE = 25


def portal_page(view):
    """Login required, never cached (merchant data on shared computers), and only for users who act
    for at least one merchant; their merchants are on `request.portal_merchants`."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        merchants = list(scoped.merchants_for_user(request.user))
        if not merchants:
            return render(request, "portal/no_merchant.html", status=403)
        request.portal_merchants = merchants
        request.portal_nav = {
            "notices": any(scoped.merchant_accepts_refund_notices(m) for m in merchants),
            "wix": any(m.platform == Platform.WIX for m in merchants),
            "sfcc": any(m.platform == Platform.SFCC for m in merchants),
        }
        return view(request, *args, **kwargs)

    return login_required(never_cache(wrapped))


def _actor(request) -> str:
    return f"merchant:{request.user.get_username()}"


# --- authentication (Django's views, portal templates) ---------------------------------------------


class LoginView(auth_views.LoginView):
    template_name = "portal/login.html"
    authentication_form = PortalLoginForm
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    next_page = "portal:login"  # a URL name: resolve_url reverses it


class PasswordResetView(auth_views.PasswordResetView):
    form_class = PortalPasswordResetForm
    template_name = "portal/password_reset_form.html"
    email_template_name = "portal/password_reset_email.txt"
    subject_template_name = "portal/password_reset_subject.txt"
    success_url = reverse_lazy("portal:password_reset_done")


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "portal/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    form_class = PortalSetPasswordForm
    template_name = "portal/password_reset_confirm.html"
    success_url = reverse_lazy("portal:password_reset_complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "portal/password_reset_complete.html"


# --- home, orders, refunds -------------------------------------------------------------------------


@portal_page
def home(request):
    bags = scoped.bags_for_user(request.user)[:RECENT]
    refunds = scoped.refunds_for_user(request.user)[:RECENT]
    return render(
        request,
        "portal/home.html",
        {
            "cards": [presenters.merchant_card(merchant) for merchant in request.portal_merchants],
            "bag_rows": [presenters.bag_row(bag) for bag in bags],
            "refund_rows": [presenters.refund_row(refund) for refund in refunds],
        },
    )


@portal_page
def order_list(request):
    query = request.GET.get("q", "").strip()
    bags = scoped.bags_for_user(request.user, query=query)
    page = Paginator(bags, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "portal/orders.html",
        {"page": page, "bag_rows": [presenters.bag_row(bag) for bag in page], "query": query},
    )


@portal_page
def order_detail(request, bag_id: int):
    bag = scoped.bag_get_for_user(request.user, bag_id)
    remaining = bag_refundable_remaining(bag)
    currency = bag.currency
    sku_rows = [
        {
            "sku": sku,
            "price": presenters.money(sku.price, currency),
            "line_price": presenters.money(sku.line_price, currency),
            "left": remaining.skus.get(sku.pk, 0),
        }
        for sku in bag.skus.all()
    ]
    return render(
        request,
        "portal/order_detail.html",
        {
            "bag": bag,
            "order_id": bag.external_id or f"bag {bag.pk}",
            "sku_rows": sku_rows,
            "totals": {
                "sub_total": presenters.money(bag.sub_total, currency),
                "discount": presenters.money(bag.discount_total, currency) if bag.discount_total else "",
                "shipping": presenters.money(bag.shipping_total, currency),
                "tax": presenters.money(bag.tax_total, currency),
                "total": presenters.money(bag.total, currency),
                "left": presenters.money(remaining.total, currency),
            },
            "refund_rows": [presenters.refund_row(refund) for refund in scoped.refunds_for_bag(bag)],
            "instructions": presenters.platform_instructions(bag.merchant, bag),
            "accepts_notices": scoped.merchant_accepts_refund_notices(bag.merchant),
            "left_minor": remaining.total,
            "status_label": presenters.bag_status_label(bag),
        },
    )


@portal_page
def refund_list(request):
    page = Paginator(scoped.refunds_for_user(request.user), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "portal/refunds.html",
        {"page": page, "refund_rows": [presenters.refund_row(refund) for refund in page]},
    )


@portal_page
def refund_detail(request, refund_id: int):
    refund = scoped.refund_get_for_user(request.user, refund_id)
    currency = refund.refund_currency
    return render(
        request,
        "portal/refund_detail.html",
        {
            "row": presenters.refund_row(refund),
            "refund": refund,
            "amounts": {
                "items": presenters.money(refund.sub_total_amount, currency),
                "shipping": presenters.money(refund.shipping_amount, currency),
                "tax": presenters.money(refund.tax_amount, currency),
                "total": presenters.money(refund.amount, currency),
            },
            "sku_lines": list(refund.skus.all()),
            "history": [
                {"date": event.date_created, "status": presenters.refund_status_label(event.to_status)}
                for event in refund.events.all()
                if event.to_status
            ],
            "processing": refund.status == RefundStatus.PROCESSING,
            "reason_label": REASON_CODE_LABELS.get(refund.reason_code, refund.reason_code),
        },
    )


# --- report a refund (SFCC Option 2) ---------------------------------------------------------------


@portal_page
@require_http_methods(["GET", "POST"])
def refund_report(request, bag_id: int):
    bag = scoped.bag_get_for_user(request.user, bag_id)
    order_id = bag.external_id or f"bag {bag.pk}"
    if not scoped.merchant_accepts_refund_notices(bag.merchant):
        return render(
            request,
            "portal/refund_report_unavailable.html",
            {
                "bag": bag,
                "order_id": order_id,
                "instructions": presenters.platform_instructions(bag.merchant, bag),
            },
            status=403 if request.method == "POST" else 200,
        )
    skus = scoped.bag_skus(bag)
    remaining = bag_refundable_remaining(bag)
    existing = None
    conflict = None
    if request.method == "POST":
        # A second post of the same form (double click, reload) or the same reference: checked against
        # what was left before the refund it recorded; the notice service then answers with that refund
        # (the same notice) or refuses it (another notice under the same reference, named in the error).
        existing = scoped.refund_for_notice(
            bag, reference=request.POST.get("reference", ""), request_key=request.POST.get("form_token", "")
        )
        if existing is not None:
            remaining = remaining_before(remaining, existing)
    form = RefundNoticeForm(
        request.POST if request.method == "POST" else None,
        bag=bag,
        skus=skus,
        remaining=remaining,
        initial={"form_token": new_form_token()},
    )
    reviewing = False
    if request.method == "POST" and form.is_valid() and request.POST.get("confirmed") != "yes":
        # The review step: what will be reported, with the amount on the button; nothing recorded yet.
        # "Change" (edit) goes back to the filled-in form.
        reviewing = "edit" not in request.POST
    elif request.method == "POST" and form.is_valid():
        try:
            result = refund_notice_record(
                bag=bag,
                actor=_actor(request),
                user=request.user,
                notices_enabled=scoped.merchant_accepts_refund_notices(bag.merchant),
                **form.notice_arguments(),
            )
        except RequestMismatch as exc:
            # The reference (or this form) already recorded a different refund: never hand the
            # merchant that first refund as if it were this one (the shopper would be under-refunded).
            # Both side by side, and a new reference asked for.
            first = existing or scoped.refund_for_notice(bag, reference=form.cleaned_data["reference"])
            conflict = presenters.reference_conflict(first, form.totals, currency=bag.currency) if first else None
            said = exc.field_errors.get("reference") or exc.field_errors.get("request_key") or [exc.message]
            form.add_error("reference", f"{' '.join(said)} If this is a different refund, give it a new reference.")
        except ValidationFailed as exc:
            form.add_service_errors(exc.field_errors, exc.message)
        except RefundNoticesNotEnabled as exc:
            form.add_error(None, exc.message)
        else:
            if result.created:
                messages.success(request, "Refund reported. We are processing it now.")
            else:
                messages.info(request, "This refund was already reported; here is its status.")
            return redirect("portal:refund_detail", refund_id=result.refund.pk)
    currency = bag.currency
    return render(
        request,
        "portal/refund_report.html",
        {
            "bag": bag,
            "order_id": order_id,
            "form": form,
            "sku_rows": [
                {
                    "sku": sku,
                    "field": form[name],
                    "left": left,
                    "price": presenters.money(sku.price, currency),
                }
                for sku, left, name in form.sku_rows
            ],
            "left": {
                "items": presenters.money(remaining.parts.sub_total, currency),
                "shipping": presenters.money(remaining.parts.shipping, currency),
                "tax": presenters.money(remaining.parts.tax, currency),
                "total": presenters.money(remaining.total, currency),
            },
            "items_left_minor": remaining.parts.sub_total,
            "total_shown": format_major(form.totals.total if form.totals else 0, currency),
            "currency": currency,
            "exponent": currency_exponent(currency),
            "nothing_left": remaining.total == 0,
            "conflict": conflict,
            "review": _refund_review(form, currency) if reviewing else None,
        },
        status=400 if request.method == "POST" and not reviewing and form.errors else 200,
    )


def _refund_review(form: RefundNoticeForm, currency: str) -> dict:
    totals = form.totals
    assert totals is not None  # a valid form has its totals
    return {
        "lines": [
            {"name": sku.name, "quantity": quantity}
            for sku, _, name in form.sku_rows
            if (quantity := form.cleaned_data.get(name) or 0) > 0
        ],
        "items": presenters.money(totals.items, currency),
        "shipping": presenters.money(totals.shipping, currency),
        "tax": presenters.money(totals.tax, currency),
        "total": presenters.money(totals.total, currency),
        "reason": REASON_CODE_LABELS.get(form.cleaned_data["reason_code"], form.cleaned_data["reason_code"]),
    }


# --- API keys for the refund-notice API ------------------------------------------------------------


@portal_page
@require_http_methods(["GET", "POST"])
def api_keys(request):
    notice_merchants = scoped.notice_merchants_for_user(request.user)
    created = None
    form = ApiKeyCreateForm(request.POST or None, merchants=notice_merchants) if request.portal_nav["notices"] else None
    if request.method == "POST":
        if form is None:
            return render(request, "portal/api_keys.html", {"keys": [], "form": None}, status=403)
        if form.is_valid():
            try:
                created = api_key_create(
                    merchant=form.cleaned_data["merchant"], name=form.cleaned_data["name"], user=request.user
                )
            except ValidationFailed as exc:
                for field, texts in exc.field_errors.items():
                    for text in texts:
                        form.add_error(field if field in form.fields else None, text)
            else:
                form = ApiKeyCreateForm(merchants=notice_merchants)
    response = render(
        request,
        "portal/api_keys.html",
        {
            "keys": scoped.api_keys_for_user(request.user),
            "form": form,
            "created": created,
            "notice_url": request.build_absolute_uri(reverse("portal:api_refund_notices")),
        },
        status=400 if request.method == "POST" and created is None else 200,
    )
    return response


@portal_page
@require_POST
def api_key_revoke_view(request, key_id: int):
    api_key = scoped.api_key_get_for_user(request.user, key_id)
    try:
        api_key_revoke(api_key=api_key, user=request.user)
    except InvalidTransition:
        messages.info(request, f"The key {api_key.prefix}… was already revoked.")
    else:
        messages.success(request, f"The key {api_key.prefix}… is revoked: requests using it are now refused.")
    return redirect("portal:api_keys")


# --- connect your Wix store (Violet Connect, seed 003) ---------------------------------------------

# The session key holding, encrypted, the API key of a connect attempt that failed: Wix shows a key
# only once, so losing it on a network error would send the merchant back to generate another. It is
# never sent back to the browser (the form shows its last 4 characters) and is dropped on success.
KEPT_WIX_KEY = "portal.connect_wix.kept_api_key"


def _keep_wix_key(request, form: ConnectWixForm, api_key: str) -> None:
    if api_key:
        request.session[KEPT_WIX_KEY] = encrypt_str(api_key)
        form.keep_api_key(api_key)


def _kept_wix_key(request) -> str:
    token = request.session.get(KEPT_WIX_KEY)
    if not token:
        return ""
    try:
        return decrypt_str(token)
    except CredentialsUnreadable:  # the encryption key rotated away: ask for the key again
        request.session.pop(KEPT_WIX_KEY, None)
        return ""


@sensitive_post_parameters("api_key", "account_id", "site_id")
@portal_page
@require_http_methods(["GET", "POST"])
def connect_wix(request):
    merchants = scoped.wix_merchants_for_user(request.user)
    if not request.portal_nav["wix"]:
        return render(request, "portal/no_wix_store.html")
    source = request.POST if request.method == "POST" else request.GET
    app_id, redirect_uri = source.get("app_id", ""), source.get("redirect_uri", "")
    allow_http = settings.DEBUG
    channel = channel_redirect_app(app_id, redirect_uri, allow_http=allow_http)
    if redirect_uri and channel is None:
        # The channel's configuration, not the merchant's doing: the operators hear of it, the
        # merchant simply stays in the portal after connecting.
        logger.warning(
            "Wix connect: redirect_uri of app %r is not registered for it (host not in allowed_redirect_hosts); "
            "the merchant stays in the portal.",
            app_id,
        )
    kept_api_key = _kept_wix_key(request)
    if request.method == "POST":
        form = ConnectWixForm(request.POST, merchants=merchants, kept_api_key=kept_api_key)
    else:
        form = ConnectWixForm(
            initial={"app_id": app_id, "redirect_uri": redirect_uri}, merchants=merchants, kept_api_key=kept_api_key
        )
    if request.method == "POST" and form.is_valid():
        merchant = form.cleaned_data["merchant"]
        try:
            result = connect_store(merchant=merchant, credentials=form.credentials(), user=request.user)
        except WixCredentialsInvalid as exc:
            _keep_wix_key(request, form, form.cleaned_data["api_key"])
            form.add_wix_errors(exc.field_errors)
            form.add_error(
                None,
                "Wix did not accept these credentials. Check for any spaces or other copy/paste errors and try again.",
            )
        except PlatformUnavailable:
            _keep_wix_key(request, form, form.cleaned_data["api_key"])
            form.add_error(
                None,
                "We could not reach Wix to check your credentials. Nothing was saved; please try again shortly. "
                "Your entries are kept below (the API key too): press Connect again in a minute.",
            )
        else:
            request.session.pop(KEPT_WIX_KEY, None)
            target = channel_redirect_url(app_id, redirect_uri, merchant_id=merchant.pk, allow_http=allow_http)
            if target:
                return HttpResponseRedirect(target)
            messages.success(
                request, f"Your Wix store{f' {result.site_name}' if result.site_name else ''} is connected."
            )
            return redirect("portal:home")
    elif request.method == "POST":
        typed_key = clean_pasted_value(request.POST.get("api_key", ""))
        if typed_key and "api_key" not in form.errors:
            _keep_wix_key(request, form, typed_key)
        only_missing = all(error.code == "required" for errors in form.errors.as_data().values() for error in errors)
        if not only_missing:  # a missing value is said on its field; a malformed one needs the hint
            form.add_error(
                None, "Some values are not in the expected format. Check for any spaces or other copy/paste errors."
            )
    cards = [presenters.merchant_card(merchant) for merchant in merchants]
    return render(
        request,
        "portal/connect_wix.html",
        {
            "form": form,
            "channel": channel,
            "cards": cards,
            "connected": any(card.connected for card in cards),
        },
        status=400 if request.method == "POST" else 200,
    )


# --- connect your order management system (SFCC, issue #25) ----------------------------------------


@sensitive_post_parameters("client_id", "client_secret")
@portal_page
@require_http_methods(["GET", "POST"])
def connect_oms(request):
    merchants = scoped.sfcc_merchants_for_user(request.user)
    if not request.portal_nav["sfcc"]:
        return render(request, "portal/connect_oms.html", {"form": None, "cards": []}, status=404)
    form = ConnectOmsForm(request.POST or None, merchants=merchants)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                oms_connect(
                    merchant=form.cleaned_data["merchant"],
                    base_url=form.cleaned_data["base_url"],
                    client_id=form.cleaned_data["client_id"],
                    client_secret=form.cleaned_data["client_secret"],
                    user=request.user,
                )
            except ValidationFailed as exc:
                form.add_service_errors(exc.field_errors)
                form.add_error(None, exc.message)
            except PlatformUnavailable:
                form.add_error(
                    None,
                    "We could not reach Salesforce to check your credentials. Nothing was saved; try again shortly.",
                )
            else:
                messages.success(
                    request, "Your order management system is connected: refunds are now found automatically."
                )
                return redirect("portal:connect_oms")
    cards = [presenters.merchant_card(merchant) for merchant in merchants]
    return render(request, "portal/connect_oms.html", {"form": form, "cards": cards}, status=status)


@portal_page
@require_POST
def disconnect_oms(request):
    form = DisconnectOmsForm(request.POST, merchants=scoped.sfcc_merchants_for_user(request.user))
    if not form.is_valid():
        return redirect("portal:connect_oms")
    oms_disconnect(merchant=form.cleaned_data["merchant"], user=request.user)
    messages.success(
        request,
        "Your order management system is disconnected. Report each refund here (Option 2) from now on.",
    )
    return redirect("portal:connect_oms")
