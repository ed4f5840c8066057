"""How a worker being retired drops nothing: stop accepting, finish, close keep-alive connections politely.

A worker stops when the supervisor lowers the worker count (``scale`` down, or retiring a release
that asked for more replicas), replaces a hung worker, or stops. Traffic reaches workers through one
listening socket they all inherit, with no proxy between: the kernel hands each new connection to
whichever worker accepts it. So "stop sending to it" is the worker closing its own copy of the
listening socket; connections waiting in the shared backlog are accepted by its siblings. Then:

1. **new requests on connections it already holds are still served**, and each answer carries
   ``Connection: close``, so the client re-opens a connection, which a sibling accepts;
2. **requests in flight finish** (bounded by ``GRACEFUL_S``; after that uvicorn cancels them and
   the supervisor SIGKILLs a worker still running after ``STOP_GRACE_S``);
3. **an idle keep-alive connection is closed only once it has been idle for the keep-alive timeout**
   (``KEEP_ALIVE_S``), exactly as it would have been without the retirement. Closing it at once is
   what drops requests: a client that sends on it at that moment (plain ``http.client`` does not even
   check a pooled connection first) gets a reset instead of an answer.

uvicorn's own shutdown closes idle connections at once; :class:`DrainingServer` runs the steps above
first and then hands what is left to it.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

GRACEFUL_S = 10.0
"""At most this long from the stop signal until requests still running are cancelled."""
KEEP_ALIVE_S = 5
"""Idle seconds after which a keep-alive connection is closed, serving or retiring (uvicorn's default)."""
TICK_S = 0.02


class DrainingProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that remembers since when it is idle and says goodbye while draining."""

    draining = False
    """Set for the whole process when the worker starts retiring."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.idle_since = self.loop.time()
        super().connection_made(transport)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if DrainingProtocol.draining and self.cycle is not None:
            self.cycle.keep_alive = False  # the answer carries "Connection: close"

    def on_response_complete(self) -> None:
        self.idle_since = self.loop.time()
        super().on_response_complete()

    def busy(self) -> bool:
        """True while a request is being read or answered on this connection."""
        return self.cycle is not None and not self.cycle.response_complete

    def retire(self, now: float) -> None:
        """One drain step: a busy connection closes after its answer; a long-idle one closes now."""
        if self.busy():
            self.cycle.keep_alive = False
        elif now - self.idle_since >= KEEP_ALIVE_S and not self.transport.is_closing():
            self.transport.close()


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose shutdown retires connections as the module docstring describes."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()  # this copy of the listening socket: a restarted supervisor can bind the port
        DrainingProtocol.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GRACEFUL_S
        while (self.server_state.connections or self.server_state.tasks) and loop.time() < deadline:
            now = loop.time()
            for conn in list(self.server_state.connections):
                if isinstance(conn, DrainingProtocol):
                    conn.retire(now)
            await asyncio.sleep(TICK_S)
        self.config.timeout_graceful_shutdown = max(1, int(deadline - loop.time()))
        await super().shutdown(sockets)


def config(app: Any) -> uvicorn.Config:
    """The uvicorn configuration of a worker serving ``app`` on the supervisor's socket."""
    return uvicorn.Config(
        app,
        http=DrainingProtocol,
        loop="uvloop",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=int(GRACEFUL_S),
        backlog=2048,
    )
