"""The Swagger UI at /v1/docs/ keeps working under the production Content-Security-Policy: the page
renders the API's operations and the browser reports no CSP violation (issue 19, item 6)."""

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_swagger_ui_renders_under_the_policy(live_server, page, screenshot, settings):
    settings.CSP_ENABLED = True
    settings.DEBUG = False
    violations = []
    page.on(
        "console",
        lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None,
    )

    response = page.goto(f"{live_server.url}/v1/docs/")

    assert "script-src 'self' 'nonce-" in response.headers["content-security-policy"]
    # The operations come from /v1/schema/, rendered by the UI.
    page.wait_for_selector('.opblock-summary-path[data-path="/v1/login"]')
    assert page.locator(".swagger-ui .info .title").inner_text().startswith("violet-refunds channel API")
    screenshot("api-docs-under-csp")
    assert violations == []
