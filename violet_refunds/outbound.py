"""Outbound HTTP made on a user's behalf (channel webhooks, merchants' platform APIs, Wix connect):
only to public addresses.

A URL a channel or a merchant gave us must not become a way into our own network (SSRF): a name
that resolves to 127.0.0.1, 10.x, 169.254.169.254 (cloud metadata), an IPv4-mapped private IPv6
address and so on is refused. The check happens where the socket is opened, on every new
connection (so on every attempt and every retry), and the socket connects to the very address
that was checked: the name is resolved once, never again between check and connect (no DNS
rebinding window). The request still carries the name: the Host header, TLS SNI and certificate
verification are for the name, as with plain requests.

- `hardened_session()`: a requests.Session that does all of this, never follows redirects (a
  redirect could point anywhere; the registered URL is the one that must answer) and ignores proxy
  environment variables (a proxy would be the address checked, not the target).
- `host_addresses_check(host)`: the same rule for registration-time validation.
- `settings.OUTBOUND_ALLOWED_PRIVATE_NETWORKS`: CIDRs that are allowed although not public (empty
  by default; development and the test suite's local receivers use 127.0.0.1/32).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import _set_socket_options, allowed_gai_family
from urllib3.util.timeout import _DEFAULT_TIMEOUT

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Ranges Python's `is_global` calls global but that reach (or translate to) other networks.
_ALSO_REFUSED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "100.64.0.0/10",  # carrier-grade NAT (shared address space)
        "192.0.0.0/24",  # IETF protocol assignments
        "192.88.99.0/24",  # 6to4 relay anycast
        "198.18.0.0/15",  # benchmarking
        "64:ff9b::/96",  # NAT64: embeds an IPv4 address
        "64:ff9b:1::/48",  # local-use NAT64
        "2002::/16",  # 6to4: embeds an IPv4 address
        "2001::/32",  # Teredo: embeds an IPv4 address
        "5f00::/16",  # segment routing
    )
)


class OutboundAddressRefused(requests.exceptions.ConnectionError):
    """The target resolves to an address we do not send to. Nothing was connected.

    A requests ConnectionError, so callers that treat "could not connect" as a failed attempt keep
    doing so; its message names the host, never the address (a channel must not learn how our
    resolver sees a name)."""


class _Refused(Exception):
    # Raised inside urllib3 and turned into OutboundAddressRefused by the adapter. Deliberately not an
    # OSError: urllib3 would wrap (and retry) an OSError; this one must travel up untouched.
    def __init__(self, host: str, address: str | None):
        super().__init__(host)
        self.host = host
        self.address = address


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_is_public(address: IPAddress) -> bool:
    """A global unicast address, outside every special-purpose range."""
    address = _unmapped(address)
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_unspecified
        and not address.is_loopback
        and not address.is_link_local
        and not address.is_private
        and not any(address in network for network in _ALSO_REFUSED if network.version == address.version)
    )


@lru_cache(maxsize=8)
def _parse_networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs if cidr.strip())


def allowed_private_networks() -> tuple[IPNetwork, ...]:
    configured = getattr(settings, "OUTBOUND_ALLOWED_PRIVATE_NETWORKS", ()) or ()
    if isinstance(configured, str):
        configured = configured.split(",")
    return _parse_networks(tuple(str(c) for c in configured))


def address_is_allowed(address: IPAddress, allowed: Iterable[IPNetwork] | None = None) -> bool:
    """Public, or inside a network the settings explicitly allow."""
    if address_is_public(address):
        return True
    networks = allowed_private_networks() if allowed is None else tuple(allowed)
    candidates = {address, _unmapped(address)}
    return any(
        candidate in network for candidate in candidates for network in networks if network.version == candidate.version
    )


def _resolve(host: str, port: int | None) -> list[tuple[Any, ...]]:
    host = host.strip("[]")
    return socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM)


def _checked_addresses(host: str, port: int | None) -> list[tuple[Any, ...]]:
    """Resolve once; every address must be allowed (a name with one private address among public
    ones is refused whole). Returns getaddrinfo's tuples, to connect to as they are."""
    results = _resolve(host, port)
    allowed = allowed_private_networks()
    for _family, _type, _proto, _canonname, sockaddr in results:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if not address_is_allowed(address, allowed):
            logger.warning("Outbound request to %s refused: it resolves to %s, not a public address", host, address)
            raise _Refused(host, str(address))
    if not results:
        raise _Refused(host, None)
    return results


def host_addresses_check(host: str, port: int | None = None) -> str | None:
    """Registration-time check: None when `host` resolves only to allowed addresses or does not
    resolve at all (the send-time check is the one that protects: DNS can change after
    registration), else the first refused address."""
    try:
        _checked_addresses(host, port)
    except _Refused as refused:
        return refused.address or "?"
    except (OSError, UnicodeError):
        return None
    return None


class _CheckedConnectionMixin:
    """urllib3's _new_conn, except that the addresses are resolved and checked first, and the socket
    connects to a checked address (never resolving the name again)."""

    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any
    _dns_host: str

    def _new_conn(self) -> socket.socket:
        try:
            addresses = _checked_addresses(self._dns_host, self.port)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[arg-type]
        error: OSError | None = None
        for family, socktype, proto, _canonname, sockaddr in addresses:
            sock = None
            try:
                sock = socket.socket(family, socktype, proto)
                _set_socket_options(sock, self.socket_options)
                if self.timeout is not _DEFAULT_TIMEOUT:
                    sock.settimeout(self.timeout)
                if self.source_address:
                    sock.bind(self.source_address)
                sock.connect(sockaddr)
            except TimeoutError as exc:
                if sock is not None:
                    sock.close()
                raise ConnectTimeoutError(
                    self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
                ) from exc
            except OSError as exc:
                error = exc
                if sock is not None:
                    sock.close()
                continue
            sys.audit("http.client.connect", self, self.host, self.port)
            return sock
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}")  # type: ignore[arg-type]


class CheckedHTTPConnection(_CheckedConnectionMixin, HTTPConnection):
    pass


class CheckedHTTPSConnection(_CheckedConnectionMixin, HTTPSConnection):
    pass


class _CheckedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = CheckedHTTPConnection


class _CheckedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = CheckedHTTPSConnection


class PublicAddressAdapter(HTTPAdapter):
    """A transport adapter whose connections go only to allowed addresses (see the module doc)."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _CheckedHTTPConnectionPool,
            "https": _CheckedHTTPSConnectionPool,
        }

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        raise requests.exceptions.InvalidProxyURL("Outbound requests on a user's behalf never use a proxy.")

    def send(self, request, *args, **kwargs):
        try:
            return super().send(request, *args, **kwargs)
        except _Refused as refused:
            raise OutboundAddressRefused(
                f"Refused: {refused.host} does not resolve to a public address.", request=request
            ) from None


class HardenedSession(requests.Session):
    """requests.Session for URLs given by users: public addresses only, no redirects, no proxies."""

    def __init__(self):
        super().__init__()
        self.trust_env = False  # no HTTP(S)_PROXY / .netrc from the environment
        adapter = PublicAddressAdapter()
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def request(self, method, url, *args, **kwargs):
        kwargs["allow_redirects"] = False
        return super().request(method, url, *args, **kwargs)


def hardened_session() -> requests.Session:
    return HardenedSession()
