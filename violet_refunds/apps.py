from django.contrib.admin.apps import AdminConfig


class VioletAdminConfig(AdminConfig):
    """django.contrib.admin with violet_refunds.admin.VioletAdminSite as `admin.site`; also registers
    the project's system checks (violet_refunds.checks)."""

    default_site = "violet_refunds.admin.VioletAdminSite"

    def ready(self):
        super().ready()
        from django.core.signals import request_finished

        from violet_refunds import (
            checks,  # noqa: F401  (registers the checks)
            logs,
        )

        request_finished.connect(logs.clear_on_request_finished, dispatch_uid="violet-logs-request-finished")
