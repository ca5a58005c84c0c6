from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.views import defaults
from django.views.decorators.http import require_GET

from reviewapp import roles

# The app's APIs: its own, and the Databricks-compatible feedback endpoint clients call.
API_PREFIXES = ("/api/", "/serving-endpoints/")


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Reviewers start on their review sessions; admins and stakeholders on the deployments."""
    if roles.can_review(request.user) and not roles.is_admin(request.user):
        return redirect("review:home")
    return redirect("agents:deployment_list")


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers and `make run`: the app is up and its database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


# Django's error views (reviewapp/urls.py handler400..500) answer HTML pages; an API client
# (under API_PREFIXES) gets the API's JSON error shape instead, whatever raised (a URL that
# matches nothing, a bug, a database that is down), under WSGI and ASGI alike. DRF already
# answers the errors raised inside its views; these catch the rest. With DEBUG on, Django shows
# its technical pages instead, as for every other page.


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIXES)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        message = str(exception) or "You do not have permission to perform this action."
        return JsonResponse({"detail": message}, status=403)
    return defaults.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    # Django has logged the exception with its traceback (django.request) before calling this.
    if _is_api(request):
        detail = "Internal server error: it was logged; try again, or tell an admin if it stays."
        return JsonResponse({"detail": detail}, status=500)
    return defaults.server_error(request)
