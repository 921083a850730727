"""Which URLs the crawler may request: the shop's, never another host or a private address.

A shop's pages are input, and a hostile shop can link, or redirect, anywhere: to
``http://169.254.169.254/`` (a cloud's metadata service), to ``http://10.0.0.1/admin``, to
another port of the crawler's own machine. Following such a URL turns the crawler into a
proxy into its own network (SSRF). ``UrlGuard.refusal(url)`` is asked before every request,
for the URLs found in pages and for every redirect hop alike, and answers why a URL must not
be requested, or None:

1. only ``http``/``https``;
2. the shop's own origin (scheme, host, port of ``base_url``) is always allowed: the
   operator chose it, and a demo shop on ``127.0.0.1`` is loopback by design;
3. any other host must be the shop's host or one of ``allowed_hosts`` (a CDN, say): a link
   or redirect to any other host is off-site;
4. the host is resolved and *every* address it resolves to must be public; a loopback,
   private, link-local, reserved or multicast address is refused unless it is the shop's
   own address and port (so ``127.0.0.1:6379`` is refused while the shop is
   ``127.0.0.1:8000``).

The check resolves the name itself, before the HTTP client resolves it again to connect, so
a DNS server answering differently the second time (DNS rebinding) is not covered; the
shop's own origin and IP literals, which are what the crawler meets in practice, do not
depend on DNS at all.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit, urlunsplit

__all__ = ["UrlGuard", "address_kind", "resolve_host"]

_DEFAULT_PORTS = {"http": 80, "https": 443}

#: ``resolve(host, port)`` -> the IP addresses a connection to ``host`` may go to.
Resolver = Callable[[str, int], list[str]]


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``getaddrinfo`` gives for ``host`` (IPv4 and IPv6), scope ids dropped."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]).split("%", 1)[0] for info in infos})


def address_kind(address: str) -> str | None:
    """Why an IP address is not a public one ("loopback", "private"...), or None if it is."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    # Most specific first: 127.0.0.1 and 169.254.x.x are also "private" to ipaddress.
    for attr, kind in (("is_loopback", "loopback"), ("is_link_local", "link-local"),
                       ("is_unspecified", "unspecified"), ("is_multicast", "multicast"),
                       ("is_private", "private"), ("is_reserved", "reserved")):
        if getattr(ip, attr):
            return kind
    return None if ip.is_global else "non-public"


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _literal_kind(host: str) -> str | None:
    try:
        return address_kind(host)
    except ValueError:  # a name, not an address
        return None


class UrlGuard:
    """The URL policy of one crawl (thread-safe; name lookups are cached for its lifetime)."""

    def __init__(
        self,
        base_url: str,
        allowed_hosts: Iterable[str] = (),
        resolve: Resolver = resolve_host,
    ):
        base = urlsplit(base_url)
        if base.scheme not in _DEFAULT_PORTS or not base.hostname:
            raise ValueError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
        self.scheme = base.scheme
        self.host = _norm_host(base.hostname)
        self.port = base.port or _DEFAULT_PORTS[base.scheme]
        self.allowed_hosts = frozenset(_norm_host(h) for h in allowed_hosts) | {self.host}
        self._resolve = resolve
        self._lock = threading.Lock()
        self._addresses: dict[tuple[str, int], list[str] | str] = {}

    # -- display -------------------------------------------------------------------------
    def is_shop_origin(self, url: str) -> bool:
        parts = urlsplit(url)
        try:
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            return False
        return (parts.scheme, _norm_host(parts.hostname or ""), port) == (self.scheme, self.host, self.port)

    def shop_relative(self, url: str) -> str:
        """``/img/a.jpg`` for a URL of the shop's own origin, the URL itself otherwise: what
        the crawl's tables store, so they do not depend on where the shop is served."""
        if self.is_shop_origin(url):
            parts = urlsplit(url)
            return urlunsplit(("", "", parts.path or "/", parts.query, ""))
        return url

    # -- the policy ------------------------------------------------------------------------
    def refusal(self, url: str) -> str | None:
        """Why ``url`` must not be requested, or None when it may be."""
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS:
            return f"not an http(s) URL: {url[:200]!r}"
        try:
            port = parts.port or _DEFAULT_PORTS[parts.scheme]
        except ValueError:
            return f"malformed URL (bad port): {url[:200]!r}"
        host = _norm_host(parts.hostname or "")
        if not host:
            return f"malformed URL (no host): {url[:200]!r}"
        if (parts.scheme, host, port) == (self.scheme, self.host, self.port):
            return None
        if host not in self.allowed_hosts:
            kind = _literal_kind(host)
            what = f"{host}, a {kind} address," if kind else host
            # Messages never name the shop's own host or port: reject tables must not change
            # with where the shop is served.
            return f"off-site URL: {what} is not the shop's host (never followed)"
        addresses = self._lookup(host, port)
        if isinstance(addresses, str):
            return addresses
        shop = self._lookup(self.host, self.port)
        for address in addresses:
            kind = address_kind(address)
            if kind is None:
                continue
            if port == self.port and not isinstance(shop, str) and address in shop:
                continue  # the shop itself, reached under another name
            return f"SSRF guard: {host}:{port} resolves to {address}, a {kind} address that is not the shop"
        return None

    def _lookup(self, host: str, port: int) -> list[str] | str:
        """The host's addresses, or why it has none; looked up once per crawl."""
        if _is_literal(host):
            return [host]  # an address literal is its own answer; no lookup
        with self._lock:
            known = self._addresses.get((host, port))
        if known is not None:
            return known
        try:
            found: list[str] | str = self._resolve(host, port) or f"{host} resolves to no address"
        except (OSError, UnicodeError) as e:
            found = f"cannot resolve {host}: {e}"
        with self._lock:
            self._addresses[(host, port)] = found
        return found


def _norm_host(host: str) -> str:
    return host.lower().rstrip(".")
