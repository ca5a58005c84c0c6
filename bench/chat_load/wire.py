"""The load generator's HTTP/1.1 client: one keep-alive connection per simulated client, on plain
asyncio streams, every request written as one pre-built byte string.

Cheap on purpose: on 2 cores it shares the CPU with the app, the demo agent and PostgreSQL, and
what it spends is taken from them (httpx or aiohttp cost several times more per request). It
reads exactly what the servers measured send (uvicorn, aiohttp: Content-Length or chunked
bodies) and, for streams, notes when the first text arrived.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

# uvicorn (the app, the agent, LiteLLM) closes a connection idle for 5 s (--timeout-keep-alive):
# one idle longer than this is opened again before the clock starts, not raced.
IDLE_REOPEN_S = 4.0


@dataclass
class Reply:
    status: int
    body: bytes
    started: float  # time.perf_counter() when the request was written
    ended: float  # ... when the whole body was read
    first_text: float | None = None  # streams: when the first piece of answer text arrived

    @property
    def latency_ms(self) -> float:
        return (self.ended - self.started) * 1000

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_text is None else (self.first_text - self.started) * 1000


def request_bytes(method: str, host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    """One client's connection, opened on first use and again after the server closed it."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.last_used = 0.0
        self.opened = 0  # connections made, the first one included

    async def _ready(self) -> asyncio.StreamReader:
        stale = time.monotonic() - self.last_used > IDLE_REOPEN_S
        if self.reader is None or self.reader.at_eof() or stale:
            self.close()
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.opened += 1
        return self.reader

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def send(self, request: bytes, text_seen: Callable[[bytes], bool] | None = None) -> Reply:
        """Write the request, read the whole reply. `text_seen` gets the body as it arrives
        (chunk by chunk) until it returns True: that moment is the reply's `first_text`."""
        reader = await self._ready()
        try:
            started = time.perf_counter()
            self.writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head[:-4].split(b"\r\n")
            version, status = status_line.split(b" ", 2)[:2]
            headers = {}
            for line in header_lines:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip().lower()
            reply = Reply(int(status), b"", started, 0.0)
            if b"content-length" in headers:
                reply.body = await reader.readexactly(int(headers[b"content-length"]))
                if text_seen is not None and text_seen(reply.body):
                    reply.first_text = time.perf_counter()
            elif headers.get(b"transfer-encoding") == b"chunked":
                reply.body = await _read_chunked(reader, reply, text_seen)
            else:
                reply.body = await reader.read()
                headers[b"connection"] = b"close"
            reply.ended = time.perf_counter()
        except BaseException:
            self.close()  # whatever was half read, the next request starts on a new connection
            raise
        self.last_used = time.monotonic()
        if headers.get(b"connection") == b"close" or version == b"HTTP/1.0":
            self.close()
        return reply


async def _read_chunked(
    reader: asyncio.StreamReader, reply: Reply, text_seen: Callable[[bytes], bool] | None
) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers
            return b"".join(parts)
        data = (await reader.readexactly(size + 2))[:-2]
        parts.append(data)
        if text_seen is not None and reply.first_text is None and text_seen(data):
            reply.first_text = time.perf_counter()


class FirstText:
    """Fed a server-sent event stream piece by piece; True once an event holds answer text.
    `app`: the Review App's `event: delta` {text}; else the agent's chat-completions chunks."""

    def __init__(self, app: bool):
        self.app = app
        self.buffer = b""

    def __call__(self, data: bytes) -> bool:
        self.buffer += data
        while b"\n\n" in self.buffer:
            event, self.buffer = self.buffer.split(b"\n\n", 1)
            if self._has_text(event):
                return True
        return False

    def _has_text(self, event: bytes) -> bool:
        lines = event.split(b"\n")
        if self.app and b"event: delta" not in lines:
            return False
        data = b"\n".join(line[5:].lstrip() for line in lines if line.startswith(b"data:"))
        if not data or data == b"[DONE]":
            return False
        payload = json.loads(data)
        if self.app:
            return bool(payload.get("text"))
        choices = payload.get("choices") or [{}]
        return bool((choices[0].get("delta") or {}).get("content"))
