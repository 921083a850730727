"""FaultConfig: deterministic, URL-keyed draws with the documented fractions."""

from __future__ import annotations

import urllib.request

import pytest

from street2shop.shop.faults import MAX_TRANSIENT_FAILURES, Canary, FaultConfig, canonical_url


def test_canonical_url_ignores_host_and_query_order():
    assert canonical_url("http://127.0.0.1:8000/p/p000001/feedback?page=2") == "/p/p000001/feedback?page=2"
    assert canonical_url("/c/x?b=2&a=1") == canonical_url("http://h:1/c/x?a=1&b=2") == "/c/x?a=1&b=2"


def test_draws_are_deterministic_and_close_to_their_fractions():
    f = FaultConfig(seed=3, p_429=0.2, p_5xx=0.1, p_corrupt_image=0.1, p_truncated_image=0.05)
    urls = [f"/img/{k:05d}.jpg" for k in range(4000)]
    assert [f.transient_failure(u) for u in urls] == [FaultConfig(**f.model_dump()).transient_failure(u) for u in urls]
    fails = [f.transient_failure(u) for u in urls]
    share_429 = sum(1 for x in fails if x and x[0] == 429) / len(urls)
    share_5xx = sum(1 for x in fails if x and x[0] in (500, 503)) / len(urls)
    assert abs(share_429 - 0.2) < 0.03 and abs(share_5xx - 0.1) < 0.03
    assert {x[1] for x in fails if x} == set(range(1, MAX_TRANSIENT_FAILURES + 1))
    corrupt = {u for u in urls if f.is_corrupt_image(u)}
    truncated = {u for u in urls if f.is_truncated_image(u)}
    assert not corrupt & truncated
    assert abs(len(corrupt) / len(urls) - 0.1) < 0.02 and abs(len(truncated) / len(urls) - 0.05) < 0.02
    assert FaultConfig(seed=4, p_corrupt_image=0.1).is_corrupt_image(urls[0]) in (True, False)
    other = {u for u in urls if FaultConfig(seed=4, p_corrupt_image=0.1).is_corrupt_image(u)}
    assert other != corrupt  # the seed matters


def test_only_later_feedback_pages_can_be_malformed():
    f = FaultConfig(p_malformed_page=1.0)
    assert f.is_malformed_page("/p/p000001/feedback?page=2")
    assert f.is_malformed_page("http://127.0.0.1:9/p/p000001/feedback?page=7")
    for url in ["/p/p000001/feedback", "/p/p000001/feedback?page=1", "/p/p000001", "/c/dresses?page=2", "/"]:
        assert not f.is_malformed_page(url)
    assert not FaultConfig().is_malformed_page("/p/p000001/feedback?page=2")


def test_garbage_is_deterministic_and_not_a_jpeg():
    f = FaultConfig(seed=1)
    g = f.garbage_bytes("/img/a.jpg", 1000)
    assert len(g) == 1000 and g == f.garbage_bytes("http://x/img/a.jpg", 1000) and not g.startswith(b"\xff\xd8")


@pytest.mark.parametrize("kw", [{"p_429": 0.7, "p_5xx": 0.4}, {"p_corrupt_image": 0.6, "p_truncated_image": 0.5},
                                {"p_429": -0.1}, {"latency_ms": -1}])
def test_bad_configs_are_refused(kw):
    with pytest.raises(ValueError):
        FaultConfig(**kw)


def test_hostile_switches_are_named_and_dump_stably():
    from street2shop.shop.faults import HOSTILE

    f = FaultConfig(hostile={"ssrf", "redirects"})
    assert f.model_dump()["hostile"] == ["redirects", "ssrf"]
    assert FaultConfig(**f.model_dump()) == f
    assert f.is_hostile("ssrf") and not f.is_hostile("slow_drip")
    assert FaultConfig().hostile == frozenset() and len(HOSTILE) == 11
    with pytest.raises(ValueError, match="unknown hostile behaviours \\['nope'\\]"):
        FaultConfig(hostile={"nope"})
    with pytest.raises(ValueError, match="unknown hostile behaviour 'nope'"):
        f.is_hostile("nope")


def test_traps_per_switch_in_a_fixed_order():
    f = FaultConfig(hostile={"ssrf", "redirects", "lying_images"}, ssrf_url="http://127.0.0.1:9/meta")
    pages = f.page_traps("dresses")
    assert [(t.switch, t.name) for t in pages] == [
        ("redirects", "redirect-loop"), ("redirects", "redirect-chain"), ("redirects", "redirect-offsite"),
        ("redirects", "redirect-private"), ("ssrf", "ssrf-link"), ("ssrf", "private-link")]
    assert [t.url for t in pages] == [
        "/trap/redirect-loop/dresses", "/trap/redirect-chain/dresses", "/trap/redirect-offsite/dresses",
        "/trap/redirect-private/dresses", "http://127.0.0.1:9/meta", "http://10.0.0.1/admin/dresses"]
    photos = [t.url for t in f.photo_traps("p000007")]
    assert photos == ["/trap/redirect-private/p000007.jpg", "http://127.0.0.1:9/meta", "http://127.0.0.1:1/p000007.jpg",
                      "/trap/garbage-jpeg/p000007.jpg", "/trap/pixel-bomb/p000007.jpg", "/trap/gif-as-jpeg/p000007.jpg"]
    assert FaultConfig().page_traps("dresses") == [] and FaultConfig().photo_traps("p000007") == []
    assert FaultConfig(hostile={"endless_pagination"}).page_traps("dresses") == []  # bends pages, adds no trap
    assert FaultConfig.trap_product_id(3, 7) == "p903007" and FaultConfig.trap_review_id("p000042") == "r9000042"


def test_half_the_photos_are_disguised_and_half_the_products_listed_twice():
    on = FaultConfig(seed=2, hostile={"lying_images", "duplicate_items"})
    urls = [f"/img/{k:05d}.jpg" for k in range(2000)]
    disguised = [u for u in urls if on.is_png_disguised(u)]
    assert abs(len(disguised) / len(urls) - 0.5) < 0.05
    assert disguised == [u for u in urls if FaultConfig(**on.model_dump()).is_png_disguised(u)]
    assert not any(FaultConfig(seed=2).is_png_disguised(u) for u in urls)  # off: never
    pids = [f"p{k:06d}" for k in range(1, 2001)]
    aliased = [p for p in pids if on.has_alias(p)]
    assert abs(len(aliased) / len(pids) - 0.5) < 0.05 and not any(FaultConfig(seed=2).has_alias(p) for p in pids)
    slugs = ["dresses", "sweaters", "jackets-coats"]
    assert FaultConfig.alias_category("sweaters", slugs) == "dresses"
    assert FaultConfig.alias_category("dresses", slugs) == "sweaters"
    assert FaultConfig.alias_url("p000003", "dresses") == "/p/p000003?ref=dresses"


def test_the_canary_counts_every_request_that_reaches_it():
    with Canary() as canary:
        assert canary.hits == {}
        assert urllib.request.urlopen(canary.url, timeout=5).read() == b"secret\n"
        urllib.request.urlopen(canary.url + "?again", timeout=5).read()
    assert canary.hits == {"/latest/meta-data/": 1, "/latest/meta-data/?again": 1}
