"""Reading what stays open on the daemon — a server-sent event stream, a WebSocket —
until the daemon ends it, every wait bounded (they bound a hang, they measure nothing)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

#: Seconds any one read may wait.
WAIT = 10.0


class EventStream:
    """A ``text/event-stream`` answer, read event by event."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        assert resp.status == 200, resp.status
        self.resp = resp

    async def next(self) -> tuple[str, Any] | None:
        """The next event as (name, data; JSON decoded when it is JSON), None at its end."""
        name, data = "message", []
        while True:
            line = await asyncio.wait_for(self.resp.content.readline(), WAIT)
            if not line:
                return None
            text = line.decode().rstrip("\r\n")
            if text.startswith("event:"):
                name = text[6:].strip()
            elif text.startswith("data:"):
                data.append(text[5:].strip())
            elif not text and data:
                joined = "\n".join(data)
                try:
                    return name, json.loads(joined)
                except ValueError:
                    return name, joined

    async def rest(self) -> list[tuple[str, Any]]:
        """Every event until the daemon ends the stream."""
        events = []
        while (event := await self.next()) is not None:
            events.append(event)
        return events


async def until_closed(ws: aiohttp.ClientWebSocketResponse) -> tuple[list[dict], str]:
    """The messages a WebSocket gets until the daemon closes it (its pings answered),
    and the reason its close frame gave."""
    messages = []
    while True:
        message = await ws.receive(timeout=WAIT)
        if message.type is aiohttp.WSMsgType.TEXT:
            messages.append(json.loads(message.data))
        elif message.type is aiohttp.WSMsgType.CLOSE:
            return messages, message.extra or ""
        else:
            raise AssertionError(f"not closed by the daemon: {message}")
