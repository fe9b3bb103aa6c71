from django.contrib.auth import views as auth_views
from django.urls import path

from compliance import views

app_name = "compliance"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("contacts/", views.contact_search, name="contact_search"),
    path("contacts/<int:contact_id>/", views.contact_detail, name="contact_detail"),
]
