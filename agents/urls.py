from django.urls import path

from agents import views

app_name = "agents"
urlpatterns = [
    path("deployments/", views.deployment_list, name="deployment_list"),
    path("deployments/<int:pk>/enabled/", views.deployment_toggle_enabled, name="toggle_enabled"),
    path("deployments/<int:pk>/check/", views.deployment_check, name="check"),
    path("chat/<int:pk>/", views.chat, name="chat"),
]
