from django.contrib.admin.apps import AdminConfig


class VioletAdminConfig(AdminConfig):
    """django.contrib.admin with violet_refunds.admin.VioletAdminSite as `admin.site`."""

    default_site = "violet_refunds.admin.VioletAdminSite"
