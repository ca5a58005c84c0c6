"""A request that finds the database pool empty (psycopg's pool, under ASGI on PostgreSQL) for
DATABASE_POOL_TIMEOUT seconds is answered 503 with Retry-After and a message that says why,
not a 500. A written Django middleware (its documented hooks only); the API's lean chat path
never gets here: `agents.turns.turn_start` refuses its turn as busy (503) on either pool.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpResponse, JsonResponse

# One answer to "when to try again" and to "is the pool empty", for pages and the API alike.
from agents.turns.admission import RETRY_AFTER_S, pool_exhausted

BUSY = "The app is too busy to answer right now; nothing was changed. Try again in a moment."


def busy_response(request) -> HttpResponse:
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": BUSY}, status=503)
    else:
        response = HttpResponse(BUSY, status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_S)
    return response


class DatabaseBusyMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return self.get_response(request)

    async def _acall(self, request):
        return await self.get_response(request)

    def process_exception(self, request, exception: Exception) -> HttpResponse | None:
        return busy_response(request) if pool_exhausted(exception) else None
