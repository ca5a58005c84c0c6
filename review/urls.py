from django.urls import path

from review import views

app_name = "review"
urlpatterns = [
    path("requests/", views.request_list, name="request_list"),
    path("requests/agreement/", views.request_agreement, name="request_agreement"),
]
