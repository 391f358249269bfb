"""A thread pool whose threads never hold up process exit."""
from __future__ import annotations

import queue
import threading
from concurrent.futures import Future


class DaemonPool:
    """A ThreadPoolExecutor whose threads never hold up process exit: a call abandoned on
    cancel or deadline must not keep a stopping service alive until its read timeout."""

    def __init__(self, size: int, name: str):
        self.size = size
        self.name = name
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.started = 0
        self.idle = 0

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        self.tasks.put((future, fn, args))
        with self.lock:
            if self.idle == 0 and self.started < self.size:
                self.started += 1
                threading.Thread(target=self.work, daemon=True,
                                 name=f"{self.name}-{self.started}").start()
        return future

    def work(self) -> None:
        while True:
            with self.lock:
                self.idle += 1
            future, fn, args = self.tasks.get()
            with self.lock:
                self.idle -= 1
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                future.set_exception(exc)
