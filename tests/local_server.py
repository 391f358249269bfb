"""A threaded HTTP server on 127.0.0.1 for test doubles (fake upstream, webhook receiver)."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class LocalServer:
    """Serves HANDLER in a daemon thread; the handler reaches this object as
    `self.server.owner`. Subclasses set HANDLER and NAME."""

    HANDLER: type[BaseHTTPRequestHandler]
    NAME = "local-server"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Bind and serve in a daemon thread."""
        self._stopping.clear()
        self._server = ThreadingHTTPServer(self._address, self.HANDLER)
        self._server.daemon_threads = True
        self._server.block_on_close = False  # hung handlers must not block stop()
        self._server.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name=self.NAME, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release hung requests and shut the server down."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT (no trailing slash)."""
        assert self._server is not None, f"{type(self).__name__} not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"
