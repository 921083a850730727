"""The engine's micro-batcher: concurrent calls share one batch, each gets its own result."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from street2shop.service.batching import MicroBatcher
from street2shop.service.engine import SearchEngine
from street2shop.storage.promotions import index_to_serve
from street2shop.storage.store import ArtifactStore

from service_testing import ITEMS, shop_photo


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.001)


class GatedDouble:
    """``fn`` for a batcher: doubles each item, records batch sizes, and holds its first call
    until released, so the test controls exactly what is queued behind it."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.started.set()
            assert self.release.wait(5)
        return [2 * x for x in items]


def test_concurrent_calls_are_batched_and_each_gets_its_own_result() -> None:
    fn = GatedDouble()
    batcher = MicroBatcher(fn, max_batch=4, max_wait_s=0.0)
    with ThreadPoolExecutor(9) as pool:
        first = pool.submit(batcher.submit, 100)
        assert fn.started.wait(5)  # the worker is busy with [100] ...
        rest = {x: pool.submit(batcher.submit, x) for x in range(8)}
        wait_until(lambda: batcher.pending() == 8)  # ... while 8 more calls queue up
        fn.release.set()
        assert first.result(5) == 200
        assert {x: f.result(5) for x, f in rest.items()} == {x: 2 * x for x in range(8)}
    # The queued calls went through in two full batches of max_batch, not eight passes.
    assert [len(b) for b in fn.batches] == [1, 4, 4]
    assert sorted(x for b in fn.batches[1:] for x in b) == list(range(8))
    batcher.close()


def test_an_idle_batcher_waits_up_to_max_wait_for_company() -> None:
    batches: list[list[int]] = []
    batcher = MicroBatcher(lambda items: batches.append(items) or items, max_batch=8, max_wait_s=0.3)
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(batcher.submit, 1)
        time.sleep(0.05)  # well inside the first call's 0.3 s wait
        b = pool.submit(batcher.submit, 2)
        assert (a.result(5), b.result(5)) == (1, 2)
    assert batches == [[1, 2]]
    batcher.close()


def test_an_error_reaches_every_caller_of_its_batch_and_the_batcher_keeps_working() -> None:
    def fn(items: list[int]) -> list[int]:
        if -1 in items:
            raise ValueError("bad item")
        return items

    batcher = MicroBatcher(fn, max_batch=8, max_wait_s=0.2)
    with ThreadPoolExecutor(2) as pool:
        calls = [pool.submit(batcher.submit, x) for x in (-1, 5)]
        for call in calls:  # both were in the failing batch (0.2 s wait)
            with pytest.raises(ValueError, match="bad item"):
                call.result(5)
    assert batcher.submit(7) == 7
    batcher.close()


def test_a_batch_function_returning_the_wrong_count_is_an_error() -> None:
    batcher = MicroBatcher(lambda items: items[:-1], max_batch=4, max_wait_s=0.0)
    with pytest.raises(RuntimeError, match="returned 0 results for 1 items"):
        batcher.submit(1)
    batcher.close()


def test_close_finishes_queued_work_and_later_calls_run_directly() -> None:
    fn = GatedDouble()
    batcher = MicroBatcher(fn, max_batch=4, max_wait_s=0.0)
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(batcher.submit, 1)
        assert fn.started.wait(5)
        queued = pool.submit(batcher.submit, 2)
        wait_until(lambda: batcher.pending() == 1)
        closing = pool.submit(batcher.close)
        fn.release.set()
        closing.result(5)
        assert (first.result(5), queued.result(5)) == (2, 4)
    assert not batcher.running()
    assert batcher.submit(3) == 6  # after close: run inline, not queued forever
    assert fn.batches[-1] == [3]


def test_several_workers_run_batches_side_by_side_and_all_stop() -> None:
    inside, both_in, release = [0], threading.Event(), threading.Event()
    lock = threading.Lock()

    def fn(items: list[int]) -> list[int]:
        with lock:
            inside[0] += 1
            if inside[0] == 2:
                both_in.set()
        assert release.wait(5)
        with lock:
            inside[0] -= 1
        return [2 * x for x in items]

    batcher = MicroBatcher(fn, max_batch=1, max_wait_s=0.0, workers=2)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(batcher.submit, i) for i in range(4)]
        assert both_in.wait(5)  # two batches inside fn at once: one per worker
        release.set()
        assert [f.result(5) for f in futures] == [0, 2, 4, 6]
    batcher.close()
    assert not batcher.running()


@pytest.mark.parametrize("kwargs", [{"max_batch": 0, "max_wait_s": 0.0}, {"max_batch": 2, "max_wait_s": -1.0},
                                    {"max_batch": 2, "max_wait_s": 0.0, "workers": 0}])
def test_bad_settings_are_refused(kwargs) -> None:
    with pytest.raises(ValueError, match="must be >= "):
        MicroBatcher(lambda items: items, **kwargs)


def test_batched_embeddings_equal_one_at_a_time(tiny_home) -> None:
    """Photos embedded together in one pass get the vectors they get alone."""
    store = ArtifactStore(tiny_home)
    ref = index_to_serve(store)
    single = SearchEngine(store, ref, street_in_background=False, batch_max=1)
    batched = SearchEngine(store, ref, street_in_background=False, batch_max=8, batch_wait_ms=200)
    assert single._batcher is None
    sizes: list[int] = []
    forward = batched._batcher.fn
    batched._batcher.fn = lambda pixels: sizes.append(len(pixels)) or forward(pixels)
    photos = [Image.open(io.BytesIO(shop_photo(store, item)[1])).convert("RGB") for item in sorted(ITEMS)]
    expected = np.concatenate([single.embed(p) for p in photos])
    with ThreadPoolExecutor(len(photos)) as pool:
        got = np.concatenate(list(pool.map(batched.embed, photos)))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert sum(sizes) == len(photos) and max(sizes) > 1  # really embedded together
    batched.close()
    with pytest.raises(ValueError, match="batch_max must be >= 1"):
        SearchEngine(store, ref, street_in_background=False, batch_max=0)


def test_two_streams_embed_what_one_stream_embeds(tiny_home) -> None:
    pytest.importorskip("openvino")
    store = ArtifactStore(tiny_home)
    ref = index_to_serve(store)
    one = SearchEngine(store, ref, street_in_background=False, inference_mode="openvino", batch_max=4, streams=1)
    two = SearchEngine(store, ref, street_in_background=False, inference_mode="openvino", batch_max=4, streams=2)
    assert (one.streams, two.streams) == (1, 2) and two.inference_mode == "openvino"
    photos = [Image.open(io.BytesIO(shop_photo(store, item)[1])).convert("RGB") for item in sorted(ITEMS)]
    expected = np.concatenate([one.embed(p) for p in photos])
    with ThreadPoolExecutor(len(photos)) as pool:
        got = np.concatenate(list(pool.map(two.embed, photos)))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    one.close(), two.close()
    eager = SearchEngine(store, ref, street_in_background=False, inference_mode="eager", batch_max=1, streams=2)
    assert eager.streams == 1  # eager spreads one pass over every thread: no second stream
