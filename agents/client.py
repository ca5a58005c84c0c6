"""The outgoing HTTP calls to agents, async, through one shared aiohttp session per event loop.

Under uvicorn that is one session per process: its pool keeps connections to each agent alive,
so a turn costs no TCP (or TLS) handshake, and a slow agent holds a coroutine, not a thread.
aiohttp, not httpx: with hundreds of connections open, httpcore's pool scanned every one of
them on each request (half of a turn's CPU under 50 clients, bench/README.md); aiohttp's
connector finds a free connection per host without a scan, and parses HTTP in C.

Failures become AgentCallError with a message for people (`message`) and the technical detail
(`detail`: status and a body excerpt), and the HTTP status the request log records.
"""

import asyncio
import json
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from django.conf import settings

from reviewapp import jsonlimits

CONNECT_TIMEOUT_S = 10.0
EXCERPT_CHARS = 500
SCALING_HINT = "the endpoint may be scaling up from zero. Try again in a minute."


class AgentCallError(Exception):
    def __init__(self, message: str, *, status_code: int, detail: str = "", raw: str = ""):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.detail = detail
        self.raw = raw


class StreamCut(AgentCallError):
    """The stream ended before its end (no `data: [DONE]`, or the connection broke); a server
    that numbers its events can be asked for the rest (agents.background)."""


class NotAStream(Exception):
    """Asked for a stream, the agent answered one JSON body instead; it is read as a reply."""

    def __init__(self, response: "AgentResponse"):
        super().__init__("not an event stream")
        self.response = response


@dataclass
class AgentResponse:
    status_code: int
    text: str
    json: object


def excerpt(text: str) -> str:
    return text[:EXCERPT_CHARS] + ("…" if len(text) > EXCERPT_CHARS else "")


_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}


def http_client() -> aiohttp.ClientSession:
    """The session of the running event loop (a session cannot move between loops)."""
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        for old_loop in [old for old in _sessions if old.is_closed()]:
            del _sessions[old_loop]  # loops of finished one-off calls (tests, commands)
        session = _sessions[loop] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=settings.AGENT_MAX_CONNECTIONS,
                limit_per_host=0,  # the total is the cap
                # Below uvicorn's 5 s keep-alive: a connection the agent is closing is not
                # picked for a turn (it would fail with a disconnect).
                keepalive_timeout=4,
            ),
            # Agents' cookies must not travel from one user's turn to another's.
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
        )
    return session


async def close_http_client() -> None:
    """Close the running loop's session; for loops that end with the call (async_to_sync)."""
    session = _sessions.pop(asyncio.get_running_loop(), None)
    if session is not None:
        await session.close()


# The event loops that serve many requests (uvicorn's): their session stays open between turns.
# Any other loop (Django's test client, WSGI, async_to_sync) lives for one call: its session is
# closed when the turn ends, as aiohttp asks, instead of being left to the garbage collector.
_serving_loops: "weakref.WeakSet[asyncio.AbstractEventLoop]" = weakref.WeakSet()


def serving_loop() -> None:
    """Called by the ASGI application for each request: this loop keeps its session."""
    _serving_loops.add(asyncio.get_running_loop())


async def turn_ended() -> None:
    if asyncio.get_running_loop() not in _serving_loops:
        await close_http_client()


def _timeout(timeout_s: float) -> aiohttp.ClientTimeout:
    # As before with httpx: no total, a limit on connecting and on each wait for data.
    return aiohttp.ClientTimeout(
        total=None, sock_connect=min(CONNECT_TIMEOUT_S, timeout_s), sock_read=timeout_s
    )


def _timed_out(timeout_s: float, url: str) -> AgentCallError:
    return AgentCallError(
        f"No answer within {timeout_s:g} s; {SCALING_HINT}",
        status_code=504,
        detail=f"timed out after {timeout_s:g} s: {url}",
    )


def _unreachable(exc: Exception, url: str) -> AgentCallError:
    return AgentCallError(
        "Could not reach the agent's endpoint.",
        status_code=502,
        detail=f"{type(exc).__name__}: {url}",
    )


def _too_large(status_code: int, limit: int) -> AgentCallError:
    return AgentCallError(
        f"The agent's answer is larger than {limit:,} bytes; it was refused.",
        status_code=502,
        detail=f"HTTP {status_code}, more than {limit} bytes",
    )


async def _read_capped(response: aiohttp.ClientResponse) -> str:
    limit, size, chunks = settings.AGENT_MAX_REPLY_BYTES, 0, []
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise _too_large(response.status, limit)
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _request(url: str, body: dict | None, headers: dict[str, str], timeout_s: float):
    """A POST of `body`, or without one a GET (a background run's state or events)."""
    if body is None:
        return http_client().get(
            url, headers=headers, timeout=_timeout(timeout_s), allow_redirects=False
        )
    return http_client().post(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
        timeout=_timeout(timeout_s),
        allow_redirects=False,
    )


def _checked(status_code: int, text: str) -> AgentResponse:
    if not 200 <= status_code < 300:
        raise AgentCallError(
            f"The agent answered with an error (HTTP {status_code}).",
            status_code=status_code,
            detail=f"HTTP {status_code}: {excerpt(text)}",
            raw=text,
        )
    try:
        parsed = jsonlimits.loads(text)
    except jsonlimits.JSONTooDeep as exc:
        raise _too_deep(exc, f"HTTP {status_code}, body: {excerpt(text)}", raw=text) from None
    except ValueError:
        raise AgentCallError(
            "The agent's answer is not valid JSON.",
            status_code=502,
            detail=f"HTTP {status_code}, body: {excerpt(text)}",
            raw=text,
        ) from None
    return AgentResponse(status_code=status_code, text=text, json=parsed)


async def post_json(
    url: str, body: dict, *, headers: dict[str, str], timeout_s: float
) -> AgentResponse:
    return await _json_call(url, body, headers, timeout_s)


async def get_checked(url: str, *, headers: dict[str, str], timeout_s: float) -> AgentResponse:
    """A GET whose JSON answer matters (a background run's state): failures raise, as a POST's."""
    return await _json_call(url, None, headers, timeout_s)


async def _json_call(
    url: str, body: dict | None, headers: dict[str, str], timeout_s: float
) -> AgentResponse:
    try:
        async with _request(url, body, headers, timeout_s) as response:
            text = await _read_capped(response)
            status = response.status
    except TimeoutError:
        raise _timed_out(timeout_s, url) from None
    except aiohttp.ClientError as exc:
        raise _unreachable(exc, url) from None
    return _checked(status, text)


async def get_json(url: str, *, headers: dict[str, str], timeout_s: float) -> object | None:
    """A small GET (endpoint metadata); None when it fails in any way: callers fall back."""
    try:
        async with http_client().get(
            url, headers=headers, timeout=_timeout(timeout_s), allow_redirects=False
        ) as response:
            text = await response.text(errors="replace")
            return jsonlimits.loads(text) if response.status == 200 else None
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


class StreamReader:
    """Reads an agent's SSE stream: `async for payload in reader` yields each `data:` line's
    JSON until `data: [DONE]`. `raw` keeps the lines read, for the request log; `last_event_id`
    is the `id:` of the last event yielded (where a resumed stream starts). Without a body the
    stream is a GET (reading a background run's events)."""

    def __init__(self, url: str, body: dict | None, *, headers: dict[str, str], timeout_s: float):
        self.url, self.body, self.headers, self.timeout_s = url, body, headers, timeout_s
        self.status_code = 0
        self.raw_parts: list[str] = []
        self.last_event_id = ""

    @property
    def raw(self) -> str:
        return "\n".join(self.raw_parts)

    async def __aiter__(self) -> AsyncIterator[object]:
        headers = {**self.headers, "Accept": "text/event-stream"}
        try:
            response = await _request(self.url, self.body, headers, self.timeout_s)
        except TimeoutError:
            raise _timed_out(self.timeout_s, self.url) from None
        except aiohttp.ClientError as exc:
            raise _unreachable(exc, self.url) from None
        self.status_code = response.status
        try:
            content_type = response.headers.get("Content-Type", "")
            if not 200 <= response.status < 300 or "text/event-stream" not in content_type:
                text = await self._read_rest(response)
                raise NotAStream(_checked(response.status, text))
            async for payload in self._events(response):
                yield payload
        finally:
            response.release()

    async def _read_rest(self, response: aiohttp.ClientResponse) -> str:
        try:
            return await _read_capped(response)
        except TimeoutError:
            raise _timed_out(self.timeout_s, self.url) from None
        except aiohttp.ClientError as exc:
            raise _unreachable(exc, self.url) from None

    async def _events(self, response: aiohttp.ClientResponse) -> AsyncIterator[object]:
        data_lines: list[str] = []
        event_id = ""
        try:
            async for line in _lines(response):
                if line.startswith("data:"):
                    data_lines.append(line[5:].removeprefix(" "))
                    continue
                if line.startswith("id:"):
                    event_id = line[3:].strip()
                    continue
                if line or not data_lines:
                    continue  # comments, event names, keep-alive blank lines
                data, data_lines = "\n".join(data_lines), []
                if data.strip() == "[DONE]":
                    return
                self.raw_parts.append(data)
                payload = _parse_event(data)
                self.last_event_id, event_id = event_id or self.last_event_id, ""
                yield payload
        except TimeoutError:
            raise AgentCallError(
                f"The stream stopped: nothing arrived for {self.timeout_s:g} s.",
                status_code=504,
                detail=f"read timed out after {self.timeout_s:g} s: {self.url}",
            ) from None
        except aiohttp.ClientError as exc:
            raise StreamCut(
                "The stream was cut before the end.",
                status_code=502,
                detail=f"{type(exc).__name__} while reading the stream: {self.url}",
            ) from None
        raise StreamCut(
            "The stream was cut before the end.",
            status_code=502,
            detail=f"the connection closed without `data: [DONE]`: {self.url}",
        )


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The body's lines (LF or CRLF), however long: aiohttp's own line reader refuses lines
    past 128 KB, and one event of a stream may carry a trace of many MB. Capped as a whole at
    AGENT_MAX_REPLY_BYTES."""
    limit, size, line = settings.AGENT_MAX_REPLY_BYTES, 0, bytearray()
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise _too_large(response.status, limit)
        start, newline = 0, chunk.find(b"\n")
        while newline != -1:
            line += chunk[start:newline]
            yield _decoded(line)
            line.clear()
            start, newline = newline + 1, chunk.find(b"\n", newline + 1)
        line += chunk[start:]
    if line:
        yield _decoded(line)


def _decoded(line: bytearray) -> str:
    return line.removesuffix(b"\r").decode("utf-8", errors="replace")


def _too_deep(exc: jsonlimits.JSONTooDeep, detail: str, raw: str = "") -> AgentCallError:
    # Refused before decoding: Python's decoder would fail on it (RecursionError) past ~1000.
    return AgentCallError(
        f"The agent's answer is JSON nested deeper than {exc.limit} levels; it was refused.",
        status_code=502,
        detail=detail,
        raw=raw,
    )


def _parse_event(data: str) -> object:
    try:
        return jsonlimits.loads(data)
    except jsonlimits.JSONTooDeep as exc:
        raise _too_deep(exc, f"data: {excerpt(data)}") from None
    except ValueError:
        raise AgentCallError(
            "The agent's stream holds a line that is not JSON.",
            status_code=502,
            detail=f"data: {excerpt(data)}",
        ) from None
