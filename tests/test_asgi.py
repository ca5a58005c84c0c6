"""The ASGI application `make run` serves: static files without a CDN, and Django behind them."""

import httpx
import pytest
from django.core.management import call_command


@pytest.fixture
def collected_static(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", "--noinput", verbosity=0)
    return settings.STATIC_ROOT


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_it_serves_vendored_htmx_and_the_app(collected_static, monkeypatch):
    from reviewapp import asgi

    monkeypatch.setattr(asgi, "static_application", asgi.build_static_app(collected_static))
    transport = httpx.ASGITransport(app=asgi.application)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        htmx = await client.get("/static/vendor/htmx/htmx.min.js")
        assert htmx.status_code == 200
        assert 'version:"2.' in htmx.text
        assert (await client.get("/static/nope.js")).status_code == 404
        health = await client.get("/healthz/")
        assert health.json() == {"status": "ok"}
        login = await client.get("/deployments/")
        assert login.status_code == 302
        assert login.headers["location"].startswith("/login/")
