"""Prints how to use the running demo: URLs, logins, API credentials and a ready-to-paste call."""

from django.core.management.base import BaseCommand

from refunds import demo
from refunds.models import App, Refund


class Command(BaseCommand):
    help = "Print the demo's URLs, logins and an API example (used by `make run`)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")

    def handle(self, *args, host, port, **options):
        base = f"http://{host}:{port}"
        lines = [
            "",
            "=" * 78,
            " violet-refunds demo",
            "=" * 78,
            f" Operator admin : {base}/admin/",
            f"   login        : {demo.OPERATOR_USERNAME} / {demo.OPERATOR_PASSWORD}",
            f" Merchant portal: {base}/portal/   (password for every merchant: {demo.MERCHANT_PASSWORD})",
        ]
        for spec in demo.MERCHANTS:
            mode = " + Salesforce Order Management" if spec.get("oms") else ""
            lines.append(f"   {demo.merchant_username(spec['key']):<16} {spec['name']} ({spec['platform']}{mode})")
        lines.append(f" Channel API    : {base}/v1/   docs: {base}/v1/docs/")
        example_app = None
        for spec in demo.APPS:
            app = App.objects.filter(name=spec["name"]).first()
            if app is None:
                continue
            example_app = example_app or (app, spec)
            lines.append(
                f"   {spec['name']}: X-Violet-App-Id {app.pk}, X-Violet-App-Secret {spec['secret']}, "
                f"user {spec['api_user']} / {demo.API_PASSWORD}"
            )
        if example_app:
            app, spec = example_app
            refund = Refund.objects.filter(bag__order__app=app).order_by("pk").first()
            lines += [
                "",
                " Try it:",
                f"   TOKEN=$(curl -s -X POST {base}/v1/login -H 'Content-Type: application/json' \\",
                f"     -H 'X-Violet-App-Id: {app.pk}' -H 'X-Violet-App-Secret: {spec['secret']}' \\",
                f'     -d \'{{"username": "{spec["api_user"]}", "password": "{demo.API_PASSWORD}"}}\' \\',
                "     | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"token\"])')",
            ]
            if refund:
                lines += [
                    f"   curl -s {base}/v1/orders/{refund.bag.order_id}/refunds/{refund.pk} \\",
                    f"     -H 'X-Violet-App-Id: {app.pk}' -H 'X-Violet-App-Secret: {spec['secret']}' \\",
                    '     -H "X-Violet-Token: $TOKEN"',
                ]
        lines += ["=" * 78, ""]
        self.stdout.write("\n".join(lines))
