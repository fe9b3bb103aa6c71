from django.urls import path

from sync import views, views_clock, views_doctor, views_duplicates, views_import, views_notify

app_name = "sync"

urlpatterns = [
    path("discrepancies/", views.discrepancy_list, name="discrepancy_list"),
    path("discrepancies/<int:discrepancy_id>/", views.discrepancy_detail, name="discrepancy_detail"),
    path("discrepancies/<int:discrepancy_id>/retry/", views.discrepancy_retry, name="discrepancy_retry"),
    path(
        "discrepancies/<int:discrepancy_id>/resolve/", views.discrepancy_resolve, name="discrepancy_resolve"
    ),
    path("discrepancies/groups/", views.discrepancy_groups, name="discrepancy_groups"),
    path("discrepancies/group/", views.discrepancy_group, name="discrepancy_group"),
    path("discrepancies/group/confirm/", views.discrepancy_group_confirm, name="discrepancy_group_confirm"),
    path("discrepancies/bulk/<int:bulk_id>/", views.bulk_action_detail, name="bulk_action_detail"),
    path("duplicates/", views_duplicates.duplicate_list, name="duplicate_list"),
    path(
        "duplicates/<int:contact_id>/decide/", views_duplicates.duplicate_decide_view, name="duplicate_decide"
    ),
    path("health/", views.sync_health, name="health"),
    path("doctor/", views_doctor.zoho_doctor, name="doctor"),
    path("import/", views_import.import_list, name="import_list"),
    path("zoho/notify/", views_notify.zoho_notify, name="zoho_notify"),
    path("alerts/", views.alert_list, name="alert_list"),
    path("opt-out-clock/", views_clock.optout_clock_page, name="optout_clock"),
    path("alerts/<int:alert_id>/acknowledge/", views.alert_acknowledge, name="alert_acknowledge"),
]
