"""ASGI entry point: `uvicorn reviewapp.asgi:application`.

Static files are served by Starlette's async StaticFiles from STATIC_ROOT (filled by
`collectstatic` during set-up), so no synchronous middleware sits in front of Django and a slow
agent never ties up a thread for a static request.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewapp.settings")
django_application = get_asgi_application()

from django.conf import settings  # noqa: E402  (settings are ready only after the line above)
from starlette.staticfiles import StaticFiles  # noqa: E402

_static_prefix = "/" + settings.STATIC_URL.strip("/") + "/"
_static_files = StaticFiles(directory=settings.STATIC_ROOT, check_dir=False)


async def application(scope: dict, receive, send) -> None:  # noqa: ANN001
    if scope["type"] == "http" and scope["path"].startswith(_static_prefix):
        # Starlette resolves files from the path below root_path.
        scope = dict(scope, root_path=scope.get("root_path", "") + _static_prefix.rstrip("/"))
        await _static_files(scope, receive, send)
        return
    await django_application(scope, receive, send)
