from django.urls import path

from evaluation import views

app_name = "evaluation"
urlpatterns = [
    path("datasets/", views.dataset_list, name="dataset_list"),
    path("datasets/<str:name>/<int:number>/", views.dataset_version, name="dataset_version"),
    path("runs/", views.run_list, name="run_list"),
    path("runs/<str:name>/", views.run_detail, name="run_detail"),
    path("runs/<str:name>/progress/", views.run_progress, name="run_progress"),
    path("runs/<str:name>/cancel/", views.run_cancel, name="run_cancel"),
    path("runs/<str:name>/resume/", views.run_resume, name="run_resume"),
    path("runs/<str:name>/review/", views.run_review, name="run_review"),
    path("runs/<str:name>/compare/", views.run_compare, name="run_compare"),
    path(
        "review/sessions/<int:pk>/dataset-version/",
        views.session_dataset_version,
        name="session_dataset_version",
    ),
]
