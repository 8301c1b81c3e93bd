"""Operator views of channels (apps) and their users: configuration, edited here."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.hashers import identify_hasher
from django.db import models

from refunds.models import App, AppMembership


class AppMembershipInline(admin.TabularInline):
    model = AppMembership
    extra = 0
    fields = ("user", "role", "date_created")
    readonly_fields = ("date_created",)
    raw_id_fields = ("user",)
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")


@admin.register(App)
class AppAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "stripe_account_id", "commission_rate", "date_created")
    search_fields = ("id__exact", "name", "stripe_account_id__exact")
    list_filter = ("date_created",)
    # The secret hash never appears in a form: it is issued by a service and only its presence is
    # shown. Outbound webhook endpoints (and their secrets) are under Channel notifications.
    fields = (
        "name",
        "api_secret",
        "stripe_account_id",
        "commission_rate",
        "allowed_redirect_hosts",
        "date_created",
        "date_last_modified",
    )
    readonly_fields = ("api_secret", "date_created", "date_last_modified")
    inlines = (AppMembershipInline,)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description="API secret")
    def api_secret(self, app):
        if not app.secret_hash:
            return "Not set: the app cannot call the API until a secret is issued."
        try:
            algorithm = identify_hasher(app.secret_hash).algorithm
        except ValueError:
            return "Set (unrecognised hash format)"
        return f"Set (only a {algorithm} hash is stored)"


@admin.register(AppMembership)
class AppMembershipAdmin(admin.ModelAdmin):
    list_display = ("id", "app", "user", "role", "date_created")
    list_filter = ("role",)
    search_fields = ("app__name", "user__username", "user__email")
    list_select_related = ("app", "user")
    raw_id_fields = ("app", "user")
