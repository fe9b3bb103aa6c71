from django.urls import path

from compliance.lifecycle import views, views_repermission

app_name = "lifecycle"

urlpatterns = [
    path("c/<str:token>", views.confirm, name="confirm"),
    path("u/<str:token>", views.unsubscribe, name="unsubscribe"),
    path("p/<str:token>", views.preferences, name="preferences"),
    path("policy/<str:label>", views.policy, name="policy"),
    path("lifecycle/sent-mail/", views.sent_mail, name="sent_mail"),
    # Staff pages: re-permission after a new policy version (linked from the policy pages).
    path(
        "policies/<int:policy_id>/repermission/",
        views_repermission.repermission_page,
        name="repermission",
    ),
    path("policies/repermission/<int:run_id>/", views_repermission.repermission_run, name="repermission_run"),
]
