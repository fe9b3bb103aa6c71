from django.contrib.auth import views as auth_views
from django.urls import path

from compliance import views

app_name = "compliance"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("login/verify/", views.login_verify, name="login_verify"),
    path("login/setup/", views.login_setup, name="login_setup"),
    path("contacts/", views.contact_search, name="contact_search"),
    path("contacts/<int:contact_id>/", views.contact_detail, name="contact_detail"),
    path("access-log/", views.access_log, name="access_log"),
]
