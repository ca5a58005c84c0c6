from django.urls import path

from dashboards import views

app_name = "dashboards"
urlpatterns = [
    path("dashboard/", views.overall_dashboard, name="overall"),
    path("deployments/<int:pk>/dashboard/", views.deployment_dashboard, name="deployment"),
]
