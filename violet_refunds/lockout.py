"""What a locked-out login sees (django-axes): JSON in the API's error shape under /v1/, a page
elsewhere. The message is generic: it never says whether the account exists."""

from django.http import HttpResponse, JsonResponse
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string

from violet_refunds.exceptions import error_body

LOCKOUT_MESSAGE = "Too many failed login attempts. Try again later."


def lockout_response(request, original_response=None, credentials=None):
    if request.path.startswith("/v1/"):
        return JsonResponse(error_body(429, LOCKOUT_MESSAGE, "too_many_attempts"), status=429)
    body: str
    try:
        body = render_to_string("portal/lockout.html", {"message": LOCKOUT_MESSAGE}, request=request)
    except TemplateDoesNotExist:
        body = LOCKOUT_MESSAGE
    return HttpResponse(body, status=429)
