from django.urls import path

from workbench import views

app_name = "workbench"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("trends/", views.trends, name="trends"),
]
