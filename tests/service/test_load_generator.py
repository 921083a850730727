"""bench/serve.py's load generator against the real app on loopback.

The generator hand-encodes its multipart body (once, for speed), so this checks that the
app accepts it, that every request is counted, and that refusals are counted as errors
with the server's reason rather than as latencies.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
from service_testing import shop_photo

from street2shop.storage.store import ArtifactStore

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture()
def serve_bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # bench/ is scripts, not a package
    return importlib.import_module("serve")


def test_load_counts_every_request_and_measures_latency(serve_bench, live_url, tiny_home) -> None:
    _, data = shop_photo(ArtifactStore(tiny_home), "p2:blue")
    result = serve_bench.load(live_url, data, clients=3, requests=13, duration_s=60, k=3, server_pid=os.getpid())
    assert result["requests"] == 13 and result["errors"] == 0, result["first_errors"]
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    assert result["throughput_rps"] > 0


def test_load_counts_refused_uploads_as_errors_with_the_reason(serve_bench, live_url) -> None:
    result = serve_bench.load(live_url, b"not an image at all", clients=2, requests=4, duration_s=60, k=3)
    assert result["requests"] == 4 and result["errors"] == 4 and result["p50_ms"] is None
    assert result["first_errors"][0].startswith("415") and "not an image" in result["first_errors"][0]


def test_cpu_seconds_of_a_process_grow_with_work(serve_bench) -> None:
    before = serve_bench.cpu_s(os.getpid())
    sum(i * i for i in range(2_000_000))
    assert serve_bench.cpu_s(os.getpid()) > before


def test_thread_cpu_covers_the_main_thread_and_grows_with_its_work(serve_bench) -> None:
    pid = os.getpid()
    before = serve_bench.thread_cpu_s(pid)
    assert pid in before  # the main thread's native id is the process id
    sum(i * i for i in range(2_000_000))
    assert serve_bench.thread_cpu_s(pid)[pid] > before[pid]


def test_cpu_by_role_splits_server_cpu_by_what_threads_do(serve_bench) -> None:
    pid = 100
    names = {100: "MainThread", 101: "AnyIO worker thread", 102: "AnyIO worker thread", 103: "embed-3f3a6cfc",
             104: "embed-street", 105: "prefect-logger"}
    before = {100: 1.0, 101: 2.0, 102: 0.5, 103: 3.0, 104: 9.0, 105: 0.0, 200: 4.0}
    after = {100: 1.5, 101: 2.6, 102: 1.0, 103: 4.0, 104: 9.0, 105: 0.1, 200: 5.5, 201: 0.3}  # 201: started during load
    roles = serve_bench.cpu_by_role(before, after, names, pid, requests=100)
    assert roles == {
        "inference backend's own threads": 18.0,  # 200 and 201: no Python name
        "request threads (decode, preprocess, search, response)": 11.0,
        "batching threads (run the model)": 10.0,
        "event loop (HTTP, upload parsing, JSON)": 5.0,
        "other Python threads": 1.0,
    }
    assert list(roles) == sorted(roles, key=roles.get, reverse=True)  # biggest first; idle embed-street left out
