"""A private asyncio event loop in a daemon thread, for servers that sync tests talk to.

The emulator, the OpenAI stub and the Job runner must keep working while a test blocks in
synchronous code (the `kubernetes` client, `ChatOpenAI.invoke`, a subprocess), and while
kopf runs its own loop in another thread; so each gets its own loop here.
"""

from __future__ import annotations

import abc
import asyncio
import socket
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the loop and wait for its result from the calling thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, function: Callable[..., T], *args: Any, timeout: float = 10.0) -> T:
        """Run a plain function on the loop's thread (where the server state lives)."""

        async def invoke() -> T:
            return function(*args)

        return self.run(invoke(), timeout)

    def stop(self) -> None:
        """Cancel what is left, stop the loop, join the thread and close the loop."""
        self.run(self._cancel_remaining_tasks())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()

    @staticmethod
    async def _cancel_remaining_tasks() -> None:
        current = asyncio.current_task()
        remaining = [task for task in asyncio.all_tasks() if task is not current]
        for task in remaining:
            task.cancel()
        await asyncio.gather(*remaining, return_exceptions=True)


class BackgroundService(abc.ABC):
    """Something started and stopped on its own `BackgroundLoop`; also a context manager."""

    def __init__(self, name: str) -> None:
        self._loop = BackgroundLoop(name)

    @abc.abstractmethod
    async def _start(self) -> None: ...

    @abc.abstractmethod
    async def _stop(self) -> None: ...

    def start(self) -> Self:
        self._loop.start()
        self._loop.run(self._start())
        return self

    def stop(self) -> None:
        self._loop.run(self._stop())
        self._loop.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now, for a server that must be told its port."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
