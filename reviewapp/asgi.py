"""ASGI entry point: `uvicorn reviewapp.asgi:application`.

Static files are served by Starlette's async StaticFiles from STATIC_ROOT (filled by
`collectstatic` during set-up), so no synchronous middleware sits in front of Django and a slow
agent never ties up a thread for a static request. A token's chat turn and rating take the
lean paths (agents/lean_chat_api.py, feedback/lean_rating_api.py); everything else is Django's.
"""

import gc
import os
from pathlib import Path

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewapp.settings")
# Read by the settings: under ASGI, PostgreSQL connections come from a pool (see there).
os.environ.setdefault("REVIEWAPP_SERVER", "asgi")
django_application = get_asgi_application()

from django.conf import settings  # noqa: E402  (settings are ready only after the line above)
from starlette.applications import Starlette  # noqa: E402
from starlette.routing import Mount  # noqa: E402
from starlette.staticfiles import StaticFiles  # noqa: E402

from agents import lean_chat_api  # noqa: E402  (imports models: after the setup above)
from agents.client import serving_loop  # noqa: E402
from feedback import lean_rating_api  # noqa: E402

STATIC_PREFIX = "/" + settings.STATIC_URL.strip("/")


def build_static_app(directory: Path) -> Starlette:
    # Mounted inside a Starlette app so a missing file is a plain 404 response.
    files = StaticFiles(directory=directory, check_dir=False)
    return Starlette(routes=[Mount(STATIC_PREFIX, app=files)])


static_application = build_static_app(settings.STATIC_ROOT)
# What start-up made (Django, the models, the URLconf, DRF) lives as long as the process: out of
# the collector's generations, its full passes stay short (under 50 API clients the longest
# pause went from 62 to 31 ms, bench/README.md).
gc.freeze()


async def application(scope: dict, receive, send) -> None:
    if scope["type"] == "http":
        serving_loop()  # agent connections stay open between this server's turns
        if scope["path"].startswith(STATIC_PREFIX + "/"):
            await static_application(scope, receive, send)
            return
        lean = lean_chat_api.lean_target(scope)
        if lean is not None:  # a token's chat turn: served without Django's handler
            await lean_chat_api.serve(scope, receive, send, *lean)
            return
        rating = lean_rating_api.lean_target(scope)
        if rating is not None:  # a token's rating: saved on the loop when it is an everyday one
            await lean_rating_api.serve(scope, receive, send, *rating, django=django_application)
            return
    await django_application(scope, receive, send)
