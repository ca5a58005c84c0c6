"""Django's built-in middleware that does no I/O, run inline under ASGI.

Under ASGI, Django runs every synchronous `process_request`/`process_view`/`process_response`
of a MiddlewareMixin in a thread (sync_to_async), one hop each: 16 per request here, about half
of what a request costs the proxy (bench/proxy.py). The classes below do only CPU work (headers,
cookies, redirects, setting lazy attributes), so under ASGI they run on the event loop directly.
Sessions and messages may write to the database, so they keep Django's hops; so would anything
else that touches the database (Django refuses the ORM on the event loop, so a mistake here
fails loudly, not silently). Under WSGI nothing changes.
"""

from asgiref.sync import iscoroutinefunction
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware


class _InlineUnderAsgi:
    def __init__(self, get_response) -> None:
        super().__init__(get_response)
        if iscoroutinefunction(get_response) and hasattr(self, "process_view"):
            sync_process_view = self.process_view

            async def process_view(request, view_func, view_args, view_kwargs):
                return sync_process_view(request, view_func, view_args, view_kwargs)

            self.process_view = process_view  # the handler awaits it instead of a hop

    async def __acall__(self, request):
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class InlineSecurityMiddleware(_InlineUnderAsgi, SecurityMiddleware):
    pass


class InlineCommonMiddleware(_InlineUnderAsgi, CommonMiddleware):
    pass


class InlineCsrfViewMiddleware(_InlineUnderAsgi, CsrfViewMiddleware):
    pass


class InlineAuthenticationMiddleware(_InlineUnderAsgi, AuthenticationMiddleware):
    pass


class InlineXFrameOptionsMiddleware(_InlineUnderAsgi, XFrameOptionsMiddleware):
    pass
