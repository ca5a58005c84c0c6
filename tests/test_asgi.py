"""The ASGI application `make run` serves: static files without a CDN, and Django behind them."""

import asyncio
import threading

import httpx
import pytest
from django.core.management import call_command


@pytest.fixture
def collected_static(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", "--noinput", verbosity=0)
    return settings.STATIC_ROOT


def run_in_own_loop(coroutine_function) -> dict:
    """Run a coroutine in a thread of its own: Playwright's sync API may hold this thread's loop."""
    results: dict = {}

    def target() -> None:
        results.update(asyncio.run(coroutine_function()))

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=60)
    return results


@pytest.mark.django_db(transaction=True)
def test_it_serves_vendored_htmx_and_the_app(collected_static, monkeypatch):
    from reviewapp import asgi

    monkeypatch.setattr(asgi, "static_application", asgi.build_static_app(collected_static))

    async def requests() -> dict:
        transport = httpx.ASGITransport(app=asgi.application)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return {
                "htmx": await client.get("/static/vendor/htmx/htmx.min.js"),
                "missing": await client.get("/static/nope.js"),
                "health": await client.get("/healthz/"),
                "page": await client.get("/deployments/"),
            }

    got = run_in_own_loop(requests)
    assert got["htmx"].status_code == 200
    assert 'version:"2.' in got["htmx"].text
    assert got["missing"].status_code == 404
    assert got["health"].json() == {"status": "ok"}
    assert got["page"].status_code == 302
    assert got["page"].headers["location"].startswith("/login/")
