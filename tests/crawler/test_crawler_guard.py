"""UrlGuard: the shop's origin, allowed hosts with public addresses only, nothing else."""

from __future__ import annotations

import pytest

from street2shop.crawler.guard import UrlGuard, address_kind

#: A stand-in DNS: name -> addresses (a name missing from it does not resolve).
DNS = {
    "shop.example": ["93.184.215.14"],
    "cdn.example": ["93.184.216.34", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "rebound.example": ["93.184.216.35", "10.1.2.3"],  # one public, one private answer
    "metadata.example": ["169.254.169.254"],
    "localhost": ["127.0.0.1", "::1"],
}


def _resolve(host: str, port: int) -> list[str]:
    if host not in DNS:
        raise OSError(f"[Errno -2] Name or service not known: {host}")
    return DNS[host]


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"), ("10.0.0.1", "private"), ("192.168.1.1", "private"),
    ("172.16.0.1", "private"), ("fc00::1", "private"), ("169.254.169.254", "link-local"),
    ("fe80::1", "link-local"), ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"),
    ("100.64.0.1", "non-public"), ("8.8.8.8", None), ("2606:4700::1111", None),
])
def test_address_kinds(address: str, kind: str | None) -> None:
    assert address_kind(address) == kind


def test_the_shop_origin_is_allowed_whatever_its_address() -> None:
    guard = UrlGuard("http://127.0.0.1:8000", resolve=_resolve)
    assert guard.refusal("http://127.0.0.1:8000/p/p000001") is None
    assert guard.refusal("http://127.0.0.1:8000") is None
    # The same host on another port is loopback and not the shop: refused.
    assert guard.refusal("http://127.0.0.1:6379/") == (
        "SSRF guard: 127.0.0.1:6379 resolves to 127.0.0.1, a loopback address that is not the shop")
    assert guard.refusal("https://127.0.0.1/").startswith("SSRF guard: 127.0.0.1:443 resolves")
    assert guard.refusal("https://127.0.0.1:8000/") is None  # the shop's address and port


def test_other_hosts_are_off_site() -> None:
    guard = UrlGuard("http://shop.example", resolve=_resolve)
    assert guard.refusal("http://shop.example/img/a.jpg") is None
    assert guard.refusal("http://SHOP.example./img/a.jpg") is None  # case and the root dot
    assert guard.refusal("http://evil.example/x") == (
        "off-site URL: evil.example is not the shop's host (never followed)")
    assert guard.refusal("http://169.254.169.254/latest/") == (
        "off-site URL: 169.254.169.254, a link-local address, is not the shop's host (never followed)")
    assert guard.refusal("http://[::1]:80/").startswith("off-site URL: ::1, a loopback address,")
    # Spellings of 127.0.0.1 that are not an address literal are names, and not the shop's.
    for url in ("http://2130706433/", "http://0x7f000001/", "http://127.1/"):
        assert guard.refusal(url).startswith("off-site URL"), url


def test_allowed_hosts_must_resolve_to_public_addresses_only() -> None:
    guard = UrlGuard("http://shop.example", ["cdn.example", "rebound.example", "metadata.example",
                                             "localhost", "gone.example"], resolve=_resolve)
    assert guard.refusal("https://cdn.example/img/a.jpg") is None
    assert guard.refusal("http://rebound.example/a.jpg") == (
        "SSRF guard: rebound.example:80 resolves to 10.1.2.3, a private address that is not the shop")
    assert "169.254.169.254, a link-local address" in guard.refusal("http://metadata.example/")
    assert "a loopback address" in guard.refusal("http://localhost:8000/")
    assert guard.refusal("http://gone.example/").startswith("cannot resolve gone.example")


def test_a_loopback_shop_is_reachable_under_an_allowed_name() -> None:
    guard = UrlGuard("http://127.0.0.1:8000", ["localhost"], resolve=lambda h, p: ["127.0.0.1"])
    assert guard.refusal("http://localhost:8000/img/a.jpg") is None  # its address and port
    assert guard.refusal("http://localhost:8001/").startswith("SSRF guard: localhost:8001")


def test_schemes_and_malformed_urls() -> None:
    guard = UrlGuard("https://shop.example", resolve=_resolve)
    assert guard.refusal("file:///etc/passwd") == "not an http(s) URL: 'file:///etc/passwd'"
    assert guard.refusal("gopher://shop.example/").startswith("not an http(s) URL")
    assert guard.refusal("https://shop.example:99999/").startswith("malformed URL (bad port)")
    assert guard.refusal("https:///nohost").startswith("malformed URL (no host)")
    with pytest.raises(ValueError, match="http"):
        UrlGuard("ftp://shop.example")


def test_lookups_are_cached_per_crawl() -> None:
    calls: list[str] = []

    def counting(host: str, port: int) -> list[str]:
        calls.append(host)
        return _resolve(host, port)

    guard = UrlGuard("http://shop.example", ["cdn.example"], resolve=counting)
    for _ in range(3):
        assert guard.refusal("http://cdn.example/a.jpg") is None
    assert calls.count("cdn.example") == 1


def test_shop_relative() -> None:
    guard = UrlGuard("http://127.0.0.1:8000", resolve=_resolve)
    assert guard.shop_relative("http://127.0.0.1:8000/img/a.jpg?x=1#f") == "/img/a.jpg?x=1"
    assert guard.shop_relative("http://127.0.0.1:8000") == "/"
    assert guard.shop_relative("http://127.0.0.1:9000/img/a.jpg") == "http://127.0.0.1:9000/img/a.jpg"
    assert guard.shop_relative("http://cdn.example/a.jpg") == "http://cdn.example/a.jpg"
