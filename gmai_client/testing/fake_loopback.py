"""An aiohttp app served on loopback from its own event loop in a background thread.

Owns the life cycle the fake servers share (``fake_api.FakeAPI`` is one): ``start`` (a failure to
bind is raised to the caller, not lost in the thread), ``stop`` (it wakes every handler sleeping in
``_sleep``, so shutdown never waits out a hang or a latency), the context manager and the address.
Running in a thread of its own, the server serves synchronous tests and clients on any other event
loop alike. A subclass mounts its routes in ``_routes``.

Every server also counts the requests it is answering at once: ``GET /_fake/in-flight`` says the
most since the last time it was asked (``{"max": N}``), what a load benchmark divides a client's
memory by (the number a client is told to keep in flight is not always reached).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, TypeVar

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
        self._in_flight = self._max_in_flight = 0  # requests being answered (event loop only)

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
        app = web.Application(client_max_size=256 * 1024 * 1024, middlewares=[self._count_in_flight])
        app.router.add_get("/_fake/in-flight", self._handle_in_flight)
        self._routes(app)
        # handler_cancellation: a client that gave up (timeout) cancels its hanging handler.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    @web.middleware
    async def _count_in_flight(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_fake/"):
            return await handler(request)
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            return await handler(request)
        finally:
            self._in_flight -= 1

    async def _handle_in_flight(self, request: web.Request) -> web.StreamResponse:
        most, self._max_in_flight = self._max_in_flight, self._in_flight
        return web.json_response({"max": most})

    async def _astop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()  # wakes hangs and latencies so that shutdown does not wait them out
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
