"""A short run of ``bench/reliability.py soak``: clients on keep-alive connections from this
process against the service in another, the hostile corpus mixed in, then ``POST
/admin/reload`` to a newer index while the load goes on. No request may get an answer other
than its expected ones, during the reload included. (The 10-minute, 50-client run with
memory sampled is the benchmark itself: ``python bench/reliability.py soak``.)"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_hostile_load_and_a_reload_under_it_fail_no_request(reliability) -> None:
    record = reliability.soak(None, clients=8, duration_s=5, reload_window_s=6, rss_every_s=1)
    assert record["errors"] == 0, record["first_errors"]
    assert record["during_reload"]["errors"] == 0, record["during_reload"]["first_errors"]
    assert record["requests"] > 0 and record["during_reload"]["requests"] > 0
    # the mix really held hostile files, and they were refused as such
    assert record["hostile_uploads"] > 0
    assert {"400", "413", "415"} <= set(record["by_status"]), record["by_status"]
    # the reload switched to the newer index while clients kept searching
    assert record["reload"]["status"] == 200 and record["reload"]["changed"] is True
    assert record["served_after_reload"] == record["newer_index"] == record["reload"]["current"]
