from django.urls import path

from compliance.lifecycle import views

app_name = "lifecycle"

urlpatterns = [
    path("c/<str:token>", views.confirm, name="confirm"),
    path("u/<str:token>", views.unsubscribe, name="unsubscribe"),
    path("p/<str:token>", views.preferences, name="preferences"),
    path("policy/<str:label>", views.policy, name="policy"),
    path("lifecycle/sent-mail/", views.sent_mail, name="sent_mail"),
]
