"""Outbound HTTP on a user's behalf goes only to public addresses (violet_refunds.outbound).

The resolver is patched so names resolve where the attack wants them (127.0.0.1, the cloud metadata
address 169.254.169.254...), and socket creation is patched to fail the test: a refused request
must be refused before any connection is opened."""

from __future__ import annotations

import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import responses

from notifications.sender import post_webhook
from platforms.clients.base import PlatformHttpClient, PlatformRequestRejected
from violet_refunds import outbound
from violet_refunds.outbound import OutboundAddressRefused, address_is_allowed, address_is_public, hardened_session

REFUSED = [
    "127.0.0.1",
    "127.5.5.5",
    "10.0.0.7",
    "172.16.3.4",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",  # noqa: S104 - an address refused, not bound
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "198.18.0.1",
    "::1",
    "::",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped IPv6
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
]
PUBLIC = ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:82b::200e"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address):
    assert not address_is_public(ipaddress.ip_address(address))
    assert not address_is_allowed(ipaddress.ip_address(address), allowed=())


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address):
    assert address_is_public(ipaddress.ip_address(address))


def test_the_allow_list_admits_only_its_networks():
    allowed = [ipaddress.ip_network("127.0.0.1/32")]
    assert address_is_allowed(ipaddress.ip_address("127.0.0.1"), allowed)
    assert address_is_allowed(ipaddress.ip_address("::ffff:127.0.0.1"), allowed)
    assert not address_is_allowed(ipaddress.ip_address("127.0.0.2"), allowed)
    assert not address_is_allowed(ipaddress.ip_address("169.254.169.254"), allowed)


def _resolving_to(*addresses: str):
    calls: list[str] = []

    def fake_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        calls.append(host)
        results = []
        for address in addresses:
            if ":" in address:
                results.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port or 443, 0, 0)))
            else:
                results.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 443)))
        return results

    return fake_getaddrinfo, calls


@pytest.fixture
def no_sockets(monkeypatch):
    """Any socket creation or connection fails the test (after the resolver is patched)."""
    opened = []

    def forbidden(*args, **kwargs):
        opened.append(args)
        raise AssertionError("a socket was opened for a refused address")

    def install():
        monkeypatch.setattr(socket, "socket", forbidden)
        monkeypatch.setattr(socket, "create_connection", forbidden)

    install.opened = opened  # type: ignore[attr-defined]
    return install


@pytest.mark.parametrize("address", ["127.0.0.1", "169.254.169.254", "::ffff:10.0.0.1", "0.0.0.0"])  # noqa: S104
def test_a_webhook_to_a_name_resolving_privately_is_refused_without_a_connection(
    monkeypatch, settings, no_sockets, address
):
    settings.OUTBOUND_ALLOWED_PRIVATE_NETWORKS = []
    resolver, calls = _resolving_to(address)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    no_sockets()

    result = post_webhook(url="https://hooks.channel.example/violet", body=b"{}", headers={}, timeout=1.0)

    assert calls == ["hooks.channel.example"]
    assert no_sockets.opened == []
    assert result.status_code is None and not result.succeeded
    assert result.error == "Refused: hooks.channel.example does not resolve to a public address."
    assert address not in result.error  # the channel does not learn how we resolve the name


def test_a_name_with_one_private_address_among_public_ones_is_refused(monkeypatch, settings, no_sockets):
    settings.OUTBOUND_ALLOWED_PRIVATE_NETWORKS = []
    resolver, _ = _resolving_to("93.184.215.14", "10.0.0.7")
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    no_sockets()

    with pytest.raises(OutboundAddressRefused):
        hardened_session().get("https://mixed.example/", timeout=1)
    assert no_sockets.opened == []


def test_a_platform_client_is_refused_at_once_without_retries(monkeypatch, settings, no_sockets):
    settings.OUTBOUND_ALLOWED_PRIVATE_NETWORKS = []
    resolver, calls = _resolving_to("169.254.169.254")
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    no_sockets()
    client = PlatformHttpClient()
    client.platform = "woocommerce"

    with pytest.raises(PlatformRequestRejected, match="does not resolve to a public address"):
        client.request_json("GET", "https://shop.merchant.example/wp-json/wc/v3/orders/1")
    assert calls == ["shop.merchant.example"]  # one attempt: a refusal is not worth a retry
    assert no_sockets.opened == []


class _Receiver:
    """A local HTTP server recording the Host header of each request; answers `status` (and a
    Location header for redirects)."""

    def __init__(self, status=200, location=""):
        self.hosts: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                receiver.hosts.append(self.headers.get("Host", ""))
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = _answer  # noqa: N815 - http.server naming

            def log_message(self, format, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_the_connection_goes_to_the_checked_address_and_the_name_is_resolved_once(monkeypatch, settings):
    """DNS rebinding: the resolver answers the allowed address first and a forbidden one after; the
    connection uses the first answer (no second resolution), and the request still names the host."""
    settings.OUTBOUND_ALLOWED_PRIVATE_NETWORKS = ["127.0.0.1/32"]
    answers = iter(["127.0.0.1", "169.254.169.254"])
    calls = []
    real_getaddrinfo = socket.getaddrinfo

    def rebinding(host, port, family=0, type=0, proto=0, flags=0):
        if host != "rebind.example":
            return real_getaddrinfo(host, port, family, type, proto, flags)
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with _Receiver() as receiver:
        result = post_webhook(url=f"http://rebind.example:{receiver.port}/hook", body=b"{}", headers={}, timeout=2.0)

    assert result.status_code == 200
    assert calls == ["rebind.example"]
    assert receiver.hosts == [f"rebind.example:{receiver.port}"]


def test_without_the_allow_list_the_local_receiver_gets_nothing(settings):
    settings.OUTBOUND_ALLOWED_PRIVATE_NETWORKS = []
    with _Receiver() as receiver:
        result = post_webhook(url=f"http://127.0.0.1:{receiver.port}/hook", body=b"{}", headers={}, timeout=2.0)
    assert receiver.hosts == []
    assert result.error.startswith("Refused:")


def test_redirects_are_never_followed(settings):
    settings.OUTBOUND_ALLOWED_PRIVATE_NETWORKS = ["127.0.0.1/32"]
    with _Receiver(status=302, location="http://169.254.169.254/latest/meta-data/") as receiver:
        result = post_webhook(url=f"http://127.0.0.1:{receiver.port}/hook", body=b"{}", headers={}, timeout=2.0)
        response = hardened_session().get(f"http://127.0.0.1:{receiver.port}/", allow_redirects=True, timeout=2)
    assert (result.status_code, result.error) == (302, "HTTP 302")
    assert response.status_code == 302
    assert len(receiver.hosts) == 2


@responses.activate
def test_a_platform_redirect_is_a_rejection_not_followed():
    responses.get("https://shop.example/api/orders/1", status=301, headers={"Location": "http://10.0.0.1/"})
    client = PlatformHttpClient()
    client.platform = "shopify"
    with pytest.raises(PlatformRequestRejected, match="redirect, not followed"):
        client.request_json("GET", "https://shop.example/api/orders/1")
    assert len(responses.calls) == 1


def test_proxies_from_the_environment_are_ignored(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://10.0.0.1:3128")
    session = hardened_session()
    assert session.trust_env is False
    with pytest.raises(requests.exceptions.InvalidProxyURL):
        session.get("https://example.com/", proxies={"https": "http://10.0.0.1:3128"}, timeout=1)


def test_registration_check_accepts_names_that_do_not_resolve(monkeypatch):
    def nxdomain(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", nxdomain)
    assert outbound.host_addresses_check("not-yet.example") is None
