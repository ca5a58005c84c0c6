"""A dropped server-sent-event connection on demand, for the real agent servers the suite runs
(tests/support/agent_runtime_app.py, tests/support/long_running_server_app.py).

Both servers are real library code whose streams we must not edit, and the app's client sends
nothing special, so the cut is armed out of band: `StreamCutter.arm(after)` (their test-only
route `POST /_test/cut-next-stream?after=N`) makes the next `text/event-stream` response that
passes the middleware stop after `after` complete SSE frames (one frame: the lines up to a blank
line, e.g. `id: 3\\nevent: delta\\ndata: {...}`). The connection is then closed without the
chunked body's terminator, as a proxy timeout or a dropped network would leave it: the client sees
`httpx.RemoteProtocolError` (incomplete chunked read), not a clean end. A stream with fewer frames
than `after` is cut at its end instead of finishing. Later responses pass whole.

The cut is an exception raised to uvicorn once the response has started: uvicorn can then only
close the connection. `HideSimulatedStreamCuts` keeps its log free of those expected tracebacks.
"""

from __future__ import annotations

import logging
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
FRAME_END = b"\n\n"


class SimulatedStreamCut(Exception):
    """Raised to uvicorn on purpose: the response has started, so it closes the connection."""


class _CutNow(Exception):
    """Raised into the wrapped app's `send` to stop it writing more of a cut stream."""


class HideSimulatedStreamCuts(logging.Filter):
    """Keeps uvicorn from logging a traceback for every cut that was asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SimulatedStreamCut))


def hide_cuts_in_uvicorn_log() -> None:
    """Install the filter on uvicorn's error logger (uvicorn configured logging before importing
    the app, so a filter added at import stays)."""
    logging.getLogger("uvicorn.error").addFilter(HideSimulatedStreamCuts())


class StreamCutter:
    """ASGI middleware: after `arm(after)`, the next SSE response is cut after `after` frames."""

    def __init__(self, app) -> None:
        self.app = app
        self.armed_after: int | None = None
        self.cuts = 0  # how many streams were cut, for the stats routes

    def arm(self, after: int) -> None:
        if after < 0:
            raise ValueError("after must be >= 0")
        self.armed_after = after

    def disarm(self) -> None:
        self.armed_after = None

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = {"after": None, "frames": 0, "buffer": b"", "cut": False}

        async def cut() -> None:
            state["cut"] = True
            self.cuts += 1
            raise _CutNow

        async def cutting_send(message: Message) -> None:
            if state["cut"]:
                raise _CutNow
            if message["type"] == "http.response.start":
                content_type = dict(message.get("headers") or []).get(b"content-type", b"")
                if content_type.startswith(b"text/event-stream") and self.armed_after is not None:
                    state["after"], self.armed_after = self.armed_after, None
                await send(message)
                if state["after"] == 0:
                    await cut()
                return
            if message["type"] != "http.response.body" or state["after"] is None:
                await send(message)
                return
            state["buffer"] += message.get("body", b"")
            while FRAME_END in state["buffer"]:
                frame, state["buffer"] = state["buffer"].split(FRAME_END, 1)
                if not frame.strip():
                    continue
                await send(
                    {"type": "http.response.body", "body": frame + FRAME_END, "more_body": True}
                )
                state["frames"] += 1
                if state["frames"] >= state["after"]:
                    await cut()
            if not message.get("more_body", False):
                await cut()  # fewer frames than asked for: still never finish the body

        try:
            await self.app(scope, receive, cutting_send)
        except BaseException:
            if state["cut"]:
                raise SimulatedStreamCut(f"cut after {state['frames']} SSE frames") from None
            raise
        if state["cut"]:
            raise SimulatedStreamCut(f"cut after {state['frames']} SSE frames")
