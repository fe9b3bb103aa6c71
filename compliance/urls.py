from django.contrib.auth import views as auth_views
from django.urls import path

from compliance import views, views_erasure, views_logins

app_name = "compliance"

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("login/verify/", views_logins.login_verify, name="login_verify"),
    path("login/setup/", views_logins.login_setup, name="login_setup"),
    path("contacts/", views.contact_search, name="contact_search"),
    path("contacts/<int:contact_id>/", views.contact_detail, name="contact_detail"),
    path("contacts/<int:contact_id>/history/", views.contact_history, name="contact_history"),
    path(
        "contacts/<int:contact_id>/phone-request/", views.contact_phone_request, name="contact_phone_request"
    ),
    path("contacts/<int:contact_id>/correction/", views.contact_correction, name="contact_correction"),
    path("contacts/<int:contact_id>/erase/", views_erasure.contact_erase, name="contact_erase"),
    path(
        "contacts/<int:contact_id>/legal-holds/",
        views_erasure.contact_legal_hold_set,
        name="contact_legal_hold_set",
    ),
    path(
        "contacts/<int:contact_id>/legal-holds/<int:hold_id>/lift/",
        views_erasure.contact_legal_hold_lift,
        name="contact_legal_hold_lift",
    ),
    path("access-log/", views.access_log, name="access_log"),
    path("policies/", views.policy_list, name="policy_list"),
    path("policies/new/", views.policy_publish, name="policy_publish"),
    path("policies/diff/", views.policy_diff, name="policy_diff"),
    path("policies/<int:policy_id>/", views.policy_detail, name="policy_detail"),
]
