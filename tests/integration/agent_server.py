"""Serve mode's app on a real loopback socket: uvicorn in a thread, ready when `/readyz` is 200."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from starlette.applications import Starlette

from tests.support.waiting import wait_for


class RunningServer:
    def __init__(self, server: uvicorn.Server, thread: threading.Thread, url: str) -> None:
        self.server, self.thread, self.url = server, thread, url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def serving(app: Starlette) -> Iterator[RunningServer]:
    """The app served on 127.0.0.1 until the block ends (or `stop()`), once it is ready."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    running = RunningServer(server, thread, url)
    try:
        wait_for(lambda: _ready(url), interval=0.02, what="serve mode to become ready")
        yield running
    finally:
        if thread.is_alive():
            running.stop()
        sock.close()
