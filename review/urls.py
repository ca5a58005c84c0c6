from django.urls import path

from review import session_admin_views, views

app_name = "review"
urlpatterns = [
    path("requests/", views.request_list, name="request_list"),
    path("requests/agreement/", views.request_agreement, name="request_agreement"),
    path("review/sessions/new/", session_admin_views.session_create, name="session_create"),
    path("review/sessions/<int:pk>/edit/", session_admin_views.session_edit, name="session_edit"),
    path(
        "review/sessions/add-turns/",
        session_admin_views.session_add_turns,
        name="session_add_turns",
    ),
]
