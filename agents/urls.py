from django.urls import path

from agents import chat_views, trace_views, views

app_name = "agents"
urlpatterns = [
    path("deployments/", views.deployment_list, name="deployment_list"),
    path("deployments/<int:pk>/enabled/", views.deployment_toggle_enabled, name="toggle_enabled"),
    path("deployments/<int:pk>/check/", views.deployment_check, name="check"),
    path("chat/<int:pk>/", chat_views.chat_page, name="chat"),
    path("chat/<int:pk>/send/", chat_views.chat_send, name="chat_send"),
    path("chat/<int:pk>/stream/", chat_views.chat_stream, name="chat_stream"),
    path("chat/<int:pk>/turn/", chat_views.chat_turn_by_key, name="chat_turn_by_key"),
    path("chat/<int:pk>/turns/<str:request_id>/run/", chat_views.chat_turn_run, name="turn_run"),
    path(
        "chat/<int:pk>/custom-inputs/check/",
        chat_views.custom_inputs_check,
        name="custom_inputs_check",
    ),
    path(
        "chat/<int:pk>/conversations/<uuid:conversation_id>/rename/",
        chat_views.conversation_rename,
        name="conversation_rename",
    ),
    path("requests/<str:request_id>/", trace_views.request_detail, name="request_detail"),
    path("requests/<str:request_id>/trace/", trace_views.trace_tree, name="trace"),
    path(
        "requests/<str:request_id>/spans/<str:span_id>/",
        trace_views.span_detail,
        name="span_detail",
    ),
    path(
        "requests/<str:request_id>/spans/<str:span_id>/children/",
        trace_views.span_children,
        name="span_children",
    ),
]
