"""The app under uvicorn, as `make run` serves it, in a thread of the test process.

Django's `live_server` is WSGI: it buffers a streamed response whole and never sees a browser
hang up, so the streaming and Stop tests need the real ASGI server. It runs in this process,
so it uses the test database (committed data: `transactional_db`) and the test settings.
Register with `pytest_plugins = ["tests.support.asgi_server"]`; fixture `asgi_live_server`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.core.management import call_command

from tests.support.servers import free_port

STARTUP_TIMEOUT_S = 20.0


@dataclass
class AsgiLiveServer:
    url: str


@pytest.fixture
def asgi_live_server(transactional_db, settings, tmp_path) -> Iterator[AsgiLiveServer]:
    import uvicorn

    from agents.client import close_http_client
    from reviewapp import asgi, pg_loop

    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", "--noinput", verbosity=0)
    static_app = asgi.build_static_app(settings.STATIC_ROOT)

    async def application(scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(asgi.STATIC_PREFIX + "/"):
            await static_app(scope, receive, send)
            return
        await asgi.application(scope, receive, send)  # the lean chat path, then Django

    port = free_port()
    config = uvicorn.Config(
        application,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)

    async def serve() -> None:
        try:
            await server.serve()
        finally:
            await close_http_client()  # this loop's agent session, before the loop ends
            await pg_loop.close_pool()  # and its database connections

    thread = threading.Thread(target=lambda: asyncio.run(serve()), name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start for the ASGI live server")
        time.sleep(0.05)
    try:
        yield AsgiLiveServer(url=f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=15)
