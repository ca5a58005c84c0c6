from django.urls import path

from feedback import views

app_name = "feedback"
urlpatterns = [
    path("requests/<str:request_id>/rating/", views.rating_save, name="rate"),
    path("requests/<str:request_id>/rating/status/", views.rating_status, name="rating_status"),
    path(
        "requests/<str:request_id>/spans/<str:span_id>/documents/<int:position>/rating/",
        views.document_rate,
        name="rate_document",
    ),
    path("deliveries/", views.delivery_list, name="delivery_list"),
    path("deliveries/<int:pk>/attempts/", views.delivery_attempts, name="delivery_attempts"),
    path("deliveries/<int:pk>/resend/", views.delivery_resend, name="delivery_resend"),
]
