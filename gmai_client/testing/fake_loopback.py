"""An aiohttp app served on loopback from its own event loop in a background thread.

Owns the life cycle the fake servers share (``fake_api.FakeAPI`` is one): ``start`` (a failure to
bind is raised to the caller, not lost in the thread), ``stop`` (it wakes every handler sleeping in
``_sleep``, so shutdown never waits out a hang or a latency), the context manager and the address.
Running in a thread of its own, the server serves synchronous tests and clients on any other event
loop alike. A subclass mounts its routes in ``_routes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TypeVar

from aiohttp import web

_Server = TypeVar("_Server", bound="LoopbackServer")


class LoopbackServer:
    """Serves the app ``_routes`` builds on ``host``:``port`` (port 0: a free one, set by ``start``)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None  # set while it runs
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def start(self: _Server) -> _Server:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._astart())
            except BaseException as exc:  # reported to start()'s caller, not lost in the thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._astop())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name=f"{type(self).__name__}:{self.port}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = None

    def __enter__(self: _Server) -> _Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when the server stops, so that stop() never waits out a hang."""
        assert self._stopping is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _astart(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=256 * 1024 * 1024)
        self._routes(app)
        # handler_cancellation: a client that gave up (timeout) cancels its hanging handler.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _astop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()  # wakes hangs and latencies so that shutdown does not wait them out
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
