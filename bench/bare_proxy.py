"""The floor of bench/proxy.py: the least a proxy in Python can add to an agent's turn.

    python bench/bare_proxy.py --port 9000 --upstream http://127.0.0.1:8001

Every POST is sent on to the same path of --upstream, its body and Content-Type/Accept as they
came, through ONE shared aiohttp ClientSession; the answer comes back with its status and
Content-Type, a stream (anything without Content-Length) chunk by chunk as it arrives. No
authentication, no parsing, no logging: nothing a real proxy would skip. GET /health answers
`ok`. bench/proxy.py runs it with the benchmark virtualenv's Python (aiohttp and uvloop are not
the app's requirements).
"""

from __future__ import annotations

import argparse

import aiohttp
import uvloop
from aiohttp import web

FORWARDED_HEADERS = ("Content-Type", "Accept")
# The demo agent (uvicorn) drops a keep-alive connection idle for 5 s; one kept longer would be
# reused just as it is closed, and that turn would fail.
UPSTREAM_KEEPALIVE_S = 4.0


async def forward(request: web.Request) -> web.StreamResponse:
    session: aiohttp.ClientSession = request.app["session"]
    headers = {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}
    url = request.app["upstream"] + request.path_qs
    async with session.post(url, data=await request.read(), headers=headers) as upstream:
        content_type = upstream.headers.get("Content-Type", "application/octet-stream")
        if upstream.content_length is not None:
            body = await upstream.read()
            return web.Response(
                body=body, status=upstream.status, headers={"Content-Type": content_type}
            )
        response = web.StreamResponse(status=upstream.status)
        response.headers["Content-Type"] = content_type
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app(upstream: str) -> web.Application:
    app = web.Application(client_max_size=64 * 1024**2)
    app["upstream"] = upstream.rstrip("/")

    async def session_context(app: web.Application):
        # limit=0: no cap on connections to the agent, as many as turns in flight.
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=UPSTREAM_KEEPALIVE_S)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            app["session"] = session
            yield

    app.cleanup_ctx.append(session_context)
    app.router.add_get("/health", health)
    app.router.add_post("/{path:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the agent's base URL")
    args = parser.parse_args()
    web.run_app(
        make_app(args.upstream),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        backlog=4096,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
