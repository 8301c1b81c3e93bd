"""DRF's default permission: deny unless an authenticator proved something.

With no default authentication classes either, a new API view is closed until it says how it
authenticates (and, if it is public, says so with `permission_classes = [AllowAny]`).
tests/security/test_deny_by_default.py walks every URL to keep it that way.
"""

from rest_framework.permissions import BasePermission


class IsAuthenticatedRequest(BasePermission):
    """An authenticator returned a credential (`request.auth`) or an authenticated user."""

    def has_permission(self, request, view):
        if request.auth is not None:
            return True
        user = request.user
        return bool(user is not None and user.is_authenticated)
