"""The crawl task's retry rule: a shop that forbids crawling is not asked again."""

from __future__ import annotations

from prefect.states import Failed

from street2shop.crawler.core import CrawlError, RobotsDisallowed
from street2shop.tasks.crawl import worth_retrying


def test_robots_refusal_is_final_other_failures_are_retried() -> None:
    assert not worth_retrying(None, None, Failed(data=RobotsDisallowed("robots.txt disallows /")))
    assert worth_retrying(None, None, Failed(data=CrawlError("connection refused")))
    assert worth_retrying(None, None, Failed(data=ConnectionError("reset")))
