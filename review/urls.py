from django.urls import path

from review import assessment_views, session_admin_views, session_views, views

app_name = "review"
urlpatterns = [
    path("requests/", views.request_list, name="request_list"),
    path("requests/agreement/", views.request_agreement, name="request_agreement"),
    path("assessments/", assessment_views.assessment_list, name="assessment_list"),
    path("review/", session_views.review_home, name="home"),
    path("review/sessions/new/", session_admin_views.session_create, name="session_create"),
    path(
        "review/sessions/add-turns/",
        session_admin_views.session_add_turns,
        name="session_add_turns",
    ),
    path("review/sessions/<int:pk>/", session_views.session_detail, name="session_detail"),
    path("review/sessions/<int:pk>/edit/", session_admin_views.session_edit, name="session_edit"),
    path("review/sessions/<int:pk>/next/", session_views.session_next, name="session_next"),
    path("review/sessions/<int:pk>/items/<int:item_id>/", session_views.item_focus, name="item"),
    path(
        "review/sessions/<int:pk>/items/<int:item_id>/skip/",
        session_views.item_skip,
        name="item_skip",
    ),
    path(
        "review/sessions/<int:pk>/items/<int:item_id>/settle/",
        session_views.item_settle,
        name="item_settle",
    ),
]
