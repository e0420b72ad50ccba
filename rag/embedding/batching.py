"""One batch for the query embeddings of requests in flight at the same moment.

A worker thread takes the first waiting query, everything queued behind it, and, when that already
makes a batch of two or more (the server is under concurrent load), waits up to ``wait_s`` for more,
then embeds them in one call. A lone query is embedded at once: a client alone pays no wait.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

Encode = Callable[[list[str]], np.ndarray]


class QueryBatcher:
    """Embeds single queries from many threads in shared batches.

    Args:
        encode: texts to vectors (one row per text), called from the worker threads only.
        max_batch: most queries in one call.
        wait_s: longest wait for more queries once two are queued (e.g. 0.001).
        workers: threads forming batches; each runs its own ``encode`` calls.

    Example:
        >>> batcher = QueryBatcher(lambda texts: np.ones((len(texts), 2), np.float32), max_batch=8, wait_s=0.001)
        >>> batcher.embed("who approves travel?").shape
        (2,)
        >>> batcher.close()
    """

    def __init__(self, encode: Encode, *, max_batch: int, wait_s: float, workers: int = 1) -> None:
        self._encode = encode
        self._max = max(1, max_batch)
        self._wait = max(0.0, wait_s)
        self._queue: queue.SimpleQueue[tuple[str, Future[np.ndarray]] | None] = queue.SimpleQueue()
        self._workers = max(1, workers)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False
        self.batches = 0
        """Calls of ``encode`` so far (with :attr:`queries`, the mean batch size)."""
        self.queries = 0

    def embed(self, text: str) -> np.ndarray:
        """The vector of one query; blocks until its batch has run. ``encode``'s exception is raised here."""
        return self.submit(text).result()

    def submit(self, text: str) -> Future[np.ndarray]:
        """The vector of one query, as a future (``encode``'s exception is raised by its ``result()``)."""
        future: Future[np.ndarray] = Future()
        self._start()
        self._queue.put((text, future))
        return future

    def _start(self) -> None:
        if len(self._threads) >= self._workers:
            return
        with self._lock:
            if self._closed:
                raise RuntimeError("the query batcher is closed")
            while len(self._threads) < self._workers:
                t = threading.Thread(target=self._run, name=f"query-embed-{len(self._threads)}", daemon=True)
                t.start()
                self._threads.append(t)

    def _take(self, first: tuple[str, Future[np.ndarray]]) -> tuple[list[tuple[str, Future[np.ndarray]]], bool]:
        batch = [first]
        stop = False
        deadline = None
        while len(batch) < self._max:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                if len(batch) < 2 or not self._wait:
                    break
                deadline = deadline or time.perf_counter() + self._wait
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if item is None:
                stop = True
                break
            batch.append(item)
        return batch, stop

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._take(first)
            live = [(t, f) for t, f in batch if f.set_running_or_notify_cancel()]
            if live:
                try:
                    vectors = self._encode([t for t, _ in live])
                    self.batches += 1
                    self.queries += len(live)
                    for row, (_, future) in zip(vectors, live, strict=True):
                        future.set_result(row)
                except BaseException as exc:  # every waiter gets the error, the worker lives on
                    for _, future in live:
                        future.set_exception(exc)
            if stop:
                return

    def close(self) -> None:
        """Stop the workers once the queries already queued are answered."""
        with self._lock:
            self._closed = True
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(None)
        for t in threads:
            t.join(timeout=5)
