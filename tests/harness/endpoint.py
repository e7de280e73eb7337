"""A real HTTP endpoint on loopback, for the analytics exporter to post to."""

from __future__ import annotations

from typing import Any

import h11
import msgspec
import trio


class Endpoint:
    """An HTTP/1.1 server on 127.0.0.1 that records each POST body and
    answers ``statuses`` in turn (the last one repeats), or never answers
    when ``hang`` is set."""

    def __init__(self, *statuses: int, hang: bool = False) -> None:
        self.statuses = list(statuses or (200,))
        self.hang = hang
        self.bodies: list[Any] = []
        self.port = 0
        self.arrived = trio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/codex/analytics-events/events"

    async def serve(self, *, task_status: trio.TaskStatus[None]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        body = b""
        async with stream:
            while not isinstance(event := conn.next_event(), h11.EndOfMessage):
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Request):
                    assert (event.method, event.target) == (b"POST", b"/codex/analytics-events/events")
                elif isinstance(event, h11.Data):
                    body += event.data
            self.bodies.append(msgspec.json.decode(body))
            self.arrived.set()
            if self.hang:
                await trio.sleep_forever()
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            await stream.send_all(conn.send(h11.Response(status_code=status, headers=[("Content-Length", "0")]))
                                  + conn.send(h11.EndOfMessage()))
