"""Dynamic batching: concurrent requests share forward passes.

A request's examples wait up to `max_wait_ms` for others; a pass holds at most `max_batch_size` examples (a
request larger than that runs alone). One thread runs the model, so passes never overlap and the event loop keeps
answering /health while a pass runs. A pass that fails is retried request by request, so one bad input fails only
its own request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


class Batcher:
    def __init__(self, predict: Callable[[list[dict]], list[dict]], max_batch_size: int, max_wait_ms: float):
        self._predict = predict
        self._max_batch_size = max_batch_size
        self._max_wait = max_wait_ms / 1000
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="bertkit-model")
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self.passes = 0  # forward passes run (how many requests shared them shows in the tests and the bench)

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._serve())

    async def stop(self) -> None:
        """After the server stopped taking requests: finish what is queued, then end the worker."""
        await self._queue.join()
        self._worker.cancel()
        self._executor.shutdown(wait=True)

    async def predict(self, examples: list[dict]) -> list[dict]:
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((examples, future))
        return await future

    async def on_model_thread(self, fn: Callable, *args):
        """`fn(*args)` on the model's thread, between passes (what shares the model's tokenizer runs there)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _serve(self) -> None:
        carried = None  # a request that did not fit the last pass opens the next one
        while True:
            batch = [carried or await self._queue.get()]
            carried = await self._gather(batch)
            try:
                await self._run(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _gather(self, batch: list) -> tuple | None:
        """Add queued requests to `batch` until it is full or the first one has waited max_wait_ms; returns the
        request that would overflow it, if any."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_wait
        size = len(batch[0][0])
        while size < self._max_batch_size:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    return None
                try:
                    item = await asyncio.wait_for(self._queue.get(), timeout)
                except asyncio.TimeoutError:  # builtin TimeoutError only from 3.11
                    return None
            if size + len(item[0]) > self._max_batch_size:
                return item
            batch.append(item)
            size += len(item[0])
        return None

    async def _run(self, batch: list) -> None:
        loop = asyncio.get_running_loop()
        examples = [e for request, _ in batch for e in request]
        try:
            self.passes += 1
            predictions = await loop.run_in_executor(self._executor, self._predict, examples)
        except Exception as error:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(error)
                return
            for item in batch:  # find whose input failed: each on its own
                await self._run([item])
            return
        start = 0
        for request, future in batch:
            if not future.done():  # a client that went away cancelled its future
                future.set_result(predictions[start : start + len(request)])
            start += len(request)
