"""Refund intents through the real entry points, over HTTP to gunicorn, as outside clients send them.

An *intent* is one refund a client means to get (one Idempotency-Key, one Shopify refund id, one
merchant reference), however many requests carry it. It is *acknowledged* when at least one of its
requests got a 2xx: from then on the server owes it a refund (or a documented reason why not).

Per bag, by kind (each bag is 118.00 USD, see soak/world.py):
- api_seq: three channel-API partial refunds in sequence: 20.00 with an Idempotency-Key sent again
  after the answer, 30.00 without a key, then "the whole remaining bag" with a key sent twice at once;
- api_concurrent: five 29.50 refunds at once on one bag (each with its own key; four fit, the fifth
  must be refused), one key sent again afterwards;
- shopify: two signed `refunds/create` webhooks (one mug line with its tax; the towel line, its tax
  and the shipping), each delivered twice under one webhook id, then re-sent under a new webhook id;
- sfcc: two refund notices to /portal/api/refund-notices with the merchant API key, each posted
  twice (the second of one of them with an Idempotency-Key).

Requests a real client would retry (webhooks, keyed API calls, notices with a reference) are retried
on a connection error or a 5xx, with backoff, as Shopify or a careful channel would; a keyless API
call is sent once (retrying it could refund twice).
"""

from __future__ import annotations

import functools
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import requests

from soak.world import API_PASSWORD, API_USER, APP_SECRET, SHOP_DOMAIN, BagInfo, World

RETRY_DELAYS = (0.5, 1, 2, 4, 6)
TIMEOUT = 30


@dataclass
class Intent:
    key: str  # unique name of the intent in this run
    kind: str  # api | shopify | sfcc
    bag_id: int
    order_id: int
    amount: int  # what the client asked for (0 = "the rest of the bag")
    identity: dict  # how to find its refund: {"refund_id"}, {"request_key"}, {"external_id"}
    requests: list = field(default_factory=list)  # (status or error, refund id or None) per request
    acknowledged: bool = False
    refund_ids: set = field(default_factory=set)  # refund ids the 2xx answers named
    rejected: str = ""  # the 4xx answer, when the server refused the intent

    def as_dict(self) -> dict:
        data = asdict(self)
        data["refund_ids"] = sorted(self.refund_ids)
        return data


class Client:
    """HTTP client for the three entry points; one requests.Session per thread."""

    def __init__(self, base_url: str, world: World):
        self.base = base_url.rstrip("/")
        self.world = world
        self._local = threading.local()
        self.token = ""
        self.lock = threading.Lock()
        self.intents: list[Intent] = []

    @property
    def session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def login(self) -> None:
        for delay in (*RETRY_DELAYS, None):
            try:
                response = self.session.post(
                    f"{self.base}/v1/login",
                    json={"username": API_USER, "password": API_PASSWORD},
                    headers=self._app_headers(),
                    timeout=TIMEOUT,
                )
                if response.status_code == 200:
                    self.token = response.json()["token"]
                    return
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
            except requests.RequestException as exc:
                problem = str(exc)
            if delay is None:
                raise RuntimeError(f"channel API login failed: {problem}")
            time.sleep(delay)

    def _app_headers(self) -> dict:
        return {"X-Violet-App-Id": str(self.world.app_id), "X-Violet-App-Secret": APP_SECRET}

    def new_intent(self, **kwargs) -> Intent:
        intent = Intent(**kwargs)
        with self.lock:
            self.intents.append(intent)
        return intent

    # --- one request, retried like its real sender would -------------------------------------------

    def _send(self, intent: Intent, method: str, url: str, *, retry: bool, refund_id_of, **kwargs) -> None:
        for delay in (*(RETRY_DELAYS if retry else ()), None):
            try:
                response = self.session.request(method, url, timeout=TIMEOUT, **kwargs)
            except requests.RequestException as exc:
                self._note(intent, f"error:{type(exc).__name__}", None)
                if delay is None:
                    return
                time.sleep(delay)
                continue
            status = response.status_code
            if 200 <= status < 300:
                refund_id = refund_id_of(response)
                self._note(intent, status, refund_id, acknowledged=True)
                return
            self._note(intent, status, None)
            if 400 <= status < 500:
                with self.lock:
                    intent.rejected = intent.rejected or f"{status}: {response.text[:300]}"
                return
            if delay is None:
                return
            time.sleep(delay)

    def _note(self, intent: Intent, status, refund_id, acknowledged: bool = False) -> None:
        with self.lock:
            intent.requests.append((status, refund_id))
            if acknowledged:
                intent.acknowledged = True
                if refund_id is not None:
                    intent.refund_ids.add(refund_id)

    # --- channel API ---------------------------------------------------------------------------------

    def api_refund(self, intent: Intent, *, amount: int | None, key: str | None) -> None:
        headers = {**self._app_headers(), "X-Violet-Token": self.token}
        if key:
            headers["Idempotency-Key"] = key
        body = {"reason": "soak", "reason_code": "CUSTOMER"}
        if amount:
            body["amount_refunded"] = amount
        self._send(
            intent,
            "POST",
            f"{self.base}/v1/orders/{intent.order_id}/bags/{intent.bag_id}/refunds",
            retry=bool(key),
            refund_id_of=lambda r: r.json().get("id"),
            json=body,
            headers=headers,
        )

    # --- Shopify -------------------------------------------------------------------------------------

    def shopify_deliver(self, intent: Intent, body: bytes, webhook_id: str) -> None:
        from platforms.adapters.shopify import shopify_hmac

        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": "refunds/create",
            "X-Shopify-Shop-Domain": SHOP_DOMAIN,
            "X-Shopify-API-Version": "2026-01",
            "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Event-Id": f"evt-{webhook_id}",
            "X-Shopify-Triggered-At": "2026-03-03T13:41:20.000Z",
            "X-Shopify-Hmac-Sha256": shopify_hmac(self.world.shopify_secret, body),
        }
        self._send(
            intent,
            "POST",
            f"{self.base}/webhooks/shopify/{self.world.shopify_public_id}/",
            retry=True,
            refund_id_of=lambda r: None,  # the receiver only stores; the refund comes later
            data=body,
            headers=headers,
        )

    # --- SFCC notices --------------------------------------------------------------------------------

    def sfcc_notice(self, intent: Intent, payload: dict, key: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {self.world.sfcc_api_key}"}
        if key:
            headers["Idempotency-Key"] = key
        self._send(
            intent,
            "POST",
            f"{self.base}/portal/api/refund-notices",
            retry=True,
            refund_id_of=lambda r: r.json().get("id"),
            json=payload,
            headers=headers,
        )


# --- scenarios, one per bag --------------------------------------------------------------------------


def _parallel(calls) -> None:
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()


def run_api_seq(client: Client, bag: BagInfo) -> None:
    key1, key3 = f"soak-{uuid.uuid4()}", f"soak-{uuid.uuid4()}"
    first = client.new_intent(
        key=f"api:{bag.bag_id}:1",
        kind="api",
        bag_id=bag.bag_id,
        order_id=bag.order_id,
        amount=2000,
        identity={"request_key": key1},
    )
    client.api_refund(first, amount=2000, key=key1)
    client.api_refund(first, amount=2000, key=key1)  # the client's retry after the answer
    second = client.new_intent(
        key=f"api:{bag.bag_id}:2",
        kind="api",
        bag_id=bag.bag_id,
        order_id=bag.order_id,
        amount=3000,
        identity={},
    )
    client.api_refund(second, amount=3000, key=None)
    third = client.new_intent(
        key=f"api:{bag.bag_id}:3",
        kind="api",
        bag_id=bag.bag_id,
        order_id=bag.order_id,
        amount=0,
        identity={"request_key": key3},
    )
    _parallel([lambda: client.api_refund(third, amount=None, key=key3)] * 2)


def run_api_concurrent(client: Client, bag: BagInfo) -> None:
    intents = []
    for number in range(5):
        key = f"soak-{uuid.uuid4()}"
        intents.append(
            (
                client.new_intent(
                    key=f"api:{bag.bag_id}:c{number}",
                    kind="api",
                    bag_id=bag.bag_id,
                    order_id=bag.order_id,
                    amount=2950,
                    identity={"request_key": key},
                ),
                key,
            )
        )
    _parallel([lambda i=i, k=k: client.api_refund(i, amount=2950, key=k) for i, k in intents])
    again, key = intents[0]
    client.api_refund(again, amount=2950, key=key)


def shopify_body(bag: BagInfo, refund_id: int, *, towel: bool) -> bytes:
    """The captured refunds/create fixture, re-aimed at this bag: one line, its tax, maybe shipping."""
    from tests.platforms.delivery import fixture_json

    payload = fixture_json("shopify", "refunds_create.json")
    line = payload["refund_line_items"][0]
    price, tax = (2000, 160) if towel else (4000, 320)
    shipping = SHIPPING_REFUND if towel else 0

    def money(minor: int) -> str:
        return f"{minor / 100:.2f}"

    def money_set(minor: int) -> dict:
        entry = {"amount": money(minor), "currency_code": "USD"}
        return {"shop_money": dict(entry), "presentment_money": dict(entry)}

    line_external_id = bag.towel_line if towel else bag.mug_line
    line_item_id = int(line_external_id) if line_external_id.isdigit() else line_external_id
    line.update(
        {
            "id": refund_id * 10 + 1,
            "quantity": 1,
            "line_item_id": line_item_id,
            "subtotal": price / 100,
            "total_tax": tax / 100,
            "subtotal_set": money_set(price),
            "total_tax_set": money_set(tax),
        }
    )
    line["line_item"].update({"id": line_item_id, "quantity": 1 if towel else 2, "price": money(price)})
    adjustments = payload["order_adjustments"]
    if shipping:
        adjustments[0].update(
            {
                "order_id": int(bag.external_id),
                "refund_id": refund_id,
                "amount": money(-shipping),
                "amount_set": money_set(-shipping),
            }
        )
    else:
        payload["order_adjustments"] = []
    transaction = payload["transactions"][0]
    transaction.update({"order_id": int(bag.external_id), "amount": money(price + tax + shipping)})
    payload.update(
        {"id": refund_id, "order_id": int(bag.external_id), "admin_graphql_api_id": f"gid://shopify/Refund/{refund_id}"}
    )
    return json.dumps(payload).encode()


SHIPPING_REFUND = 1000


def run_shopify(client: Client, bag: BagInfo) -> None:
    for number, towel in ((1, False), (2, True)):
        refund_id = 900_000_000 + bag.bag_id * 10 + number
        intent = client.new_intent(
            key=f"shopify:{bag.bag_id}:{number}",
            kind="shopify",
            bag_id=bag.bag_id,
            order_id=bag.order_id,
            amount=(2000 + 160 + SHIPPING_REFUND) if towel else (4000 + 320),
            identity={"external_id": str(refund_id)},
        )
        body = shopify_body(bag, refund_id, towel=towel)
        webhook_id = f"soak-wh-{uuid.uuid4()}"
        deliver = functools.partial(client.shopify_deliver, intent, body, webhook_id)
        _parallel([deliver, deliver])  # Shopify's duplicate delivery, at the same time
        client.shopify_deliver(intent, body, f"soak-wh-{uuid.uuid4()}")  # re-sent under a new webhook id


def run_sfcc(client: Client, bag: BagInfo) -> None:
    notices = [
        {"skus": [{"external_id": bag.mug_line, "quantity": 1}], "tax_amount": 320, "shipping_amount": 0},
        {"skus": [{"external_id": bag.towel_line, "quantity": 1}], "tax_amount": 160, "shipping_amount": 1000},
    ]
    for number, notice in enumerate(notices, start=1):
        reference = f"RF-{bag.bag_id}-{number}"
        intent = client.new_intent(
            key=f"sfcc:{bag.bag_id}:{number}",
            kind="sfcc",
            bag_id=bag.bag_id,
            order_id=bag.order_id,
            amount=(4320 if number == 1 else 3160),
            identity={"external_id": reference},
        )
        payload = {
            "platform_order_id": bag.external_id,
            "reason_code": "CUSTOMER",
            "reference": reference,
            **notice,
        }
        client.sfcc_notice(intent, payload)
        client.sfcc_notice(intent, payload, key=f"soak-{uuid.uuid4()}" if number == 2 else None)


SCENARIOS = {"api_seq": run_api_seq, "api_concurrent": run_api_concurrent, "shopify": run_shopify, "sfcc": run_sfcc}
# Refunds each kind of bag is expected to end with (api_concurrent: four of five fit).
REFUNDS_PER_BAG = {"api_seq": 3, "api_concurrent": 4, "shopify": 2, "sfcc": 2}


def plan_kinds(refunds: int, rng) -> list[str]:
    """Bag kinds in rotation until the expected refunds reach `refunds`, shuffled by the seed."""
    order = ["api_seq", "api_concurrent", "shopify", "sfcc"]
    kinds, expected = [], 0
    while expected < refunds:
        kind = order[len(kinds) % len(order)]
        kinds.append(kind)
        expected += REFUNDS_PER_BAG[kind]
    rng.shuffle(kinds)
    return kinds


def run_load(client: Client, bags: list[BagInfo], *, seconds: float, threads: int, stop: threading.Event, log) -> None:
    """Start one scenario per bag, evenly spread over `seconds`, at most `threads` at a time."""
    spacing = seconds / max(len(bags), 1)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = []
        for index, bag in enumerate(bags):
            if stop.is_set():
                break
            wait = started + index * spacing - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            futures.append(pool.submit(_guarded, SCENARIOS[bag.kind], client, bag, log))
        for future in futures:
            future.result()


def _guarded(scenario, client, bag, log) -> None:
    try:
        scenario(client, bag)
    except Exception as exc:  # a harness bug must not hide the rest of the run
        log(f"scenario {bag.kind} on bag {bag.bag_id} crashed: {type(exc).__name__}: {exc}")
