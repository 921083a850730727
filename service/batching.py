"""Micro-batching: concurrent callers' items gathered into batches for one function call.

A search server embeds one photo per request; on two cores one forward pass of several
photos costs far less than as many single passes, so :class:`MicroBatcher` lets concurrent
requests share a pass (``bench/serve.py --batch-max 1,16`` compares).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Runs ``fn`` on batches gathered from concurrent :meth:`submit` calls.

    One worker thread takes the first waiting item, then keeps collecting until it has
    ``max_batch`` items or ``max_wait_s`` has passed since that first item, and calls
    ``fn(items)``, which must return one result per item in order. Items that arrive while
    ``fn`` runs wait in the queue and form the next batch, so under load batches fill up
    without anyone waiting on the clock. Each caller gets its own result, or the exception
    ``fn`` raised for its batch.

    ``workers`` threads do this side by side, each forming its own batches from the one
    queue, for an ``fn`` that may run concurrently (a model with several inference streams).

    :meth:`close` lets the workers finish what is queued and stop; later calls run ``fn`` on
    their item directly, so an engine replaced by a reload still answers its last requests.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        max_batch: int,
        max_wait_s: float,
        name: str = "batcher",
        workers: int = 1,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.fn, self.max_batch, self.max_wait_s = fn, max_batch, max_wait_s
        # queue.Queue, not SimpleQueue: with several workers a timed get() can find the item
        # it was woken for already taken, and CPython 3.11's SimpleQueue may then wait again
        # with no timeout at all (a worker hung so in a CI run). Queue's condition variable
        # re-checks the deadline every time it wakes.
        self._queue: queue.Queue[tuple[T, Future] | None] = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()  # orders submits against close's end-of-queue markers
        self._workers = [
            threading.Thread(target=self._run, name=f"{name}-{i}" if workers > 1 else name, daemon=True)
            for i in range(workers)
        ]
        for worker in self._workers:
            worker.start()

    def submit(self, item: T) -> R:
        """``fn``'s result for ``item``, computed in a batch with concurrent submissions."""
        future: Future = Future()
        with self._lock:
            closed = self._closed
            if not closed:
                self._queue.put((item, future))
        if closed:
            return self._call([item])[0]
        return future.result()

    def running(self) -> bool:
        """Whether any worker thread is still alive (false once :meth:`close` returned)."""
        return any(worker.is_alive() for worker in self._workers)

    def pending(self) -> int:
        """Items queued and not yet taken by the worker (for tests and monitoring)."""
        return self._queue.qsize()

    def close(self, timeout: float | None = None) -> None:
        """Finish the queued items, then stop the workers (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._workers:  # one end marker per worker, after every queued item
                self._queue.put(None)
        for worker in self._workers:
            worker.join(timeout)

    def _call(self, items: list[T]) -> list[R]:
        results = list(self.fn(items))
        if len(results) != len(items):
            raise RuntimeError(f"batch function returned {len(results)} results for {len(items)} items")
        return results

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = [first], False
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch:
                try:
                    # Drain what is already queued, then wait out the rest of max_wait.
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            futures = [f for _, f in batch]
            try:
                results = self._call([item for item, _ in batch])
            except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
                for f in futures:
                    f.set_exception(exc)
            else:
                for f, result in zip(futures, results):
                    f.set_result(result)
            if stop:
                return
