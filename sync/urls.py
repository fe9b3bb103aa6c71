from django.urls import path

from sync import views

app_name = "sync"

urlpatterns = [
    path("discrepancies/", views.discrepancy_list, name="discrepancy_list"),
    path("discrepancies/<int:discrepancy_id>/", views.discrepancy_detail, name="discrepancy_detail"),
    path("discrepancies/<int:discrepancy_id>/retry/", views.discrepancy_retry, name="discrepancy_retry"),
    path(
        "discrepancies/<int:discrepancy_id>/resolve/", views.discrepancy_resolve, name="discrepancy_resolve"
    ),
    path("health/", views.sync_health, name="health"),
    path("alerts/", views.alert_list, name="alert_list"),
    path("alerts/<int:alert_id>/acknowledge/", views.alert_acknowledge, name="alert_acknowledge"),
]
