"""The outgoing HTTP calls to agents, async, through one shared httpx.AsyncClient per event loop.

Under uvicorn that is one client per process: its pool keeps connections to each agent alive, so
a turn costs no TCP (or TLS) handshake, and a slow agent holds a coroutine, not a thread.

Failures become AgentCallError with a message for people (`message`) and the technical detail
(`detail`: status and a body excerpt), and the HTTP status the request log records.
"""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
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


_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


def http_client() -> httpx.AsyncClient:
    """The client of the running event loop (an AsyncClient cannot move between loops)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        for old_loop in [old for old in _clients if old.is_closed()]:
            del _clients[old_loop]  # loops of finished one-off calls (tests, WSGI)
        client = _clients[loop] = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=settings.AGENT_MAX_CONNECTIONS,
                max_keepalive_connections=settings.AGENT_MAX_CONNECTIONS,
                # Below uvicorn's 5 s keep-alive: a connection the agent is closing is not
                # picked for a turn (it would fail with a ReadError).
                keepalive_expiry=4,
            ),
            follow_redirects=False,
        )
    return client


async def close_http_client() -> None:
    """Close the running loop's client; for loops that end with the call (async_to_sync)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


def _timeout(timeout_s: float) -> httpx.Timeout:
    return httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s))


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


async def _read_capped(response: httpx.Response) -> str:
    limit, size, chunks = settings.AGENT_MAX_REPLY_BYTES, 0, []
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise _too_large(response.status_code, limit)
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


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
    try:
        request = http_client().build_request(
            "POST", url, json=body, headers=headers, timeout=_timeout(timeout_s)
        )
        response = await http_client().send(request, stream=True)
        try:
            text = await _read_capped(response)
        finally:
            await response.aclose()
    except httpx.TimeoutException:
        raise _timed_out(timeout_s, url) from None
    except httpx.HTTPError as exc:
        raise _unreachable(exc, url) from None
    return _checked(response.status_code, text)


async def get_json(url: str, *, headers: dict[str, str], timeout_s: float) -> object | None:
    """A small GET (endpoint metadata); None when it fails in any way: callers fall back."""
    try:
        response = await http_client().get(url, headers=headers, timeout=_timeout(timeout_s))
        return jsonlimits.loads(response.text) if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


class StreamReader:
    """Reads an agent's SSE stream: `async for payload in reader` yields each `data:` line's
    JSON until `data: [DONE]`. `raw` keeps the lines read, for the request log."""

    def __init__(self, url: str, body: dict, *, headers: dict[str, str], timeout_s: float):
        self.url, self.body, self.headers, self.timeout_s = url, body, headers, timeout_s
        self.status_code = 0
        self.raw_parts: list[str] = []

    @property
    def raw(self) -> str:
        return "\n".join(self.raw_parts)

    async def __aiter__(self) -> AsyncIterator[object]:
        headers = {**self.headers, "Accept": "text/event-stream"}
        try:
            request = http_client().build_request(
                "POST", self.url, json=self.body, headers=headers, timeout=_timeout(self.timeout_s)
            )
            response = await http_client().send(request, stream=True)
        except httpx.TimeoutException:
            raise _timed_out(self.timeout_s, self.url) from None
        except httpx.HTTPError as exc:
            raise _unreachable(exc, self.url) from None
        self.status_code = response.status_code
        try:
            content_type = response.headers.get("content-type", "")
            if not 200 <= response.status_code < 300 or "text/event-stream" not in content_type:
                text = await self._read_rest(response)
                raise NotAStream(_checked(response.status_code, text))
            async for payload in self._events(response):
                yield payload
        finally:
            await response.aclose()

    async def _read_rest(self, response: httpx.Response) -> str:
        try:
            return await _read_capped(response)
        except httpx.TimeoutException:
            raise _timed_out(self.timeout_s, self.url) from None
        except httpx.HTTPError as exc:
            raise _unreachable(exc, self.url) from None

    async def _events(self, response: httpx.Response) -> AsyncIterator[object]:
        limit, size, data_lines = settings.AGENT_MAX_REPLY_BYTES, 0, []
        try:
            async for line in response.aiter_lines():
                size += len(line) + 1
                if size > limit:
                    raise _too_large(response.status_code, limit)
                if line.startswith("data:"):
                    data_lines.append(line[5:].removeprefix(" "))
                    continue
                if line or not data_lines:
                    continue  # comments, event names, ids, keep-alive blank lines
                data, data_lines = "\n".join(data_lines), []
                if data.strip() == "[DONE]":
                    return
                self.raw_parts.append(data)
                yield _parse_event(data)
        except httpx.TimeoutException:
            raise AgentCallError(
                f"The stream stopped: nothing arrived for {self.timeout_s:g} s.",
                status_code=504,
                detail=f"read timed out after {self.timeout_s:g} s: {self.url}",
            ) from None
        except httpx.HTTPError as exc:
            raise AgentCallError(
                "The stream was cut before the end.",
                status_code=502,
                detail=f"{type(exc).__name__} while reading the stream: {self.url}",
            ) from None
        raise AgentCallError(
            "The stream was cut before the end.",
            status_code=502,
            detail=f"the connection closed without `data: [DONE]`: {self.url}",
        )


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
