"""Simulated clients and the loops that run them: each client sends a turn, waits for the whole
answer, and sends the next (closed loop), through the app, straight to the agent, or through
one of the other proxies."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from .wire import Connection, FirstText, Reply, request_bytes

MESSAGE = "How does MLflow tracing show retrieved documents?"
ERROR_PAUSE_S = 0.1  # after a failed turn: a refused connection must not become a busy loop


class TurnFailed(Exception):
    """An answer that is not a turn: its kind is counted (HTTP status, a stream's error...)."""


class AppClient:
    """A reviewer's client of the chat API. Its first turn opens a conversation (answered in one
    piece); every later one sends the same body into that conversation, so the app reads no
    history and the body stays constant."""

    side = "app"

    def __init__(self, port: int, deployment_id: int, token: str, stream: bool = False):
        self.conn = Connection("127.0.0.1", port)
        self.host = f"127.0.0.1:{port}"
        self.path = f"/api/v1/deployments/{deployment_id}/chat/"
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        self.stream = stream
        self.conversation_id: str | None = None
        self.request = self._request({"messages": [{"role": "user", "content": MESSAGE}]})

    def _request(self, body: dict) -> bytes:
        return request_bytes("POST", self.host, self.path, self.headers, json.dumps(body).encode())

    async def turn(self) -> Reply:
        streamed = self.stream and self.conversation_id is not None
        reply = await self.conn.send(self.request, FirstText(app=True) if streamed else None)
        if reply.status != 200:
            raise TurnFailed(f"HTTP {reply.status}")
        if streamed:
            done = reply.body.rfind(b"event: done\n")
            if done < 0:
                raise TurnFailed("stream without `done`")
            if reply.body.startswith(b'data: {"error"', done + 12):
                raise TurnFailed("stream ended in an error")
        if self.conversation_id is None:
            self.conversation_id = json.loads(reply.body)["conversation_id"]
            body = {"messages": [{"role": "user", "content": MESSAGE}]}
            body["conversation_id"] = self.conversation_id
            if self.stream:
                body["stream"] = True
            self.request = self._request(body)
        return reply


class ForwardedClient:
    """The same turn without the app: straight to the agent (side "direct"), or through a
    proxy of the comparison (bench/bare_proxy.py, LiteLLM's). The body is the one the app sent
    the agent, as it sent it (LiteLLM's clients add the model name to it)."""

    def __init__(
        self,
        side: str,
        port: int,
        path: str,
        body: bytes,
        stream: bool = False,
        headers: dict[str, str] | None = None,
    ):
        self.side = side
        self.conn = Connection("127.0.0.1", port)
        headers = {"Content-Type": "application/json", **(headers or {})}
        if stream:
            headers["Accept"] = "text/event-stream"  # as the app's stream reader asks
        self.request = request_bytes("POST", f"127.0.0.1:{port}", path, headers, body)
        self.stream = stream

    async def turn(self) -> Reply:
        reply = await self.conn.send(self.request, FirstText(app=False) if self.stream else None)
        if reply.status != 200:
            raise TurnFailed(f"HTTP {reply.status}")
        if self.stream and not reply.body.endswith(b"data: [DONE]\n\n"):
            raise TurnFailed("stream without [DONE]")
        return reply


@dataclass
class Results:
    replies: list[Reply] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)  # (perf_counter, kind)
    in_flight: int = 0
    clients_answered: set = field(default_factory=set)  # ids of clients with a turn done

    def ended_within(self, start: float, end: float) -> list[Reply]:
        return [r for r in self.replies if start <= r.ended < end]

    def error_kinds(self, start: float = -math.inf, end: float = math.inf) -> Counter:
        return Counter(kind for at, kind in self.errors if start <= at < end)


@dataclass
class Stop:
    """When clients stop starting turns (perf_counter); the in-flight part sets it late."""

    at: float = math.inf


async def run_clients(
    clients: list,
    results: Results,
    stop: Stop,
    *,
    turns_each: int | None = None,
    stagger_s: float = 0.0,
    timeout_s: float = 120.0,
) -> None:
    """Every client sends turns back to back until `stop.at` (or `turns_each` turns each); the
    first turns start spread over `stagger_s`, so a thousand clients do not all connect at once."""
    rng = random.Random(7)

    async def one(client_id: int, client) -> None:
        if stagger_s:
            await asyncio.sleep(rng.uniform(0, stagger_s))
        sent = 0
        while time.perf_counter() < stop.at and (turns_each is None or sent < turns_each):
            sent += 1
            results.in_flight += 1
            try:
                async with asyncio.timeout(timeout_s):
                    reply = await client.turn()
            except TurnFailed as exc:
                failed = str(exc)
            except (OSError, EOFError, TimeoutError, ValueError, KeyError) as exc:
                failed = type(exc).__name__  # IncompleteReadError is an EOFError
            else:
                failed = ""
                results.replies.append(reply)
                results.clients_answered.add(client_id)
            finally:
                results.in_flight -= 1
            if failed:
                results.errors.append((time.perf_counter(), failed))
                await asyncio.sleep(ERROR_PAUSE_S)

    await asyncio.gather(*(one(i, client) for i, client in enumerate(clients)))


def close_all(clients: list) -> None:
    for client in clients:
        client.conn.close()
