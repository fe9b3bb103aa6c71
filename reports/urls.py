from django.urls import path

from reports import views

app_name = "reports"

urlpatterns = [
    path("", views.report_list, name="report_list"),
    path("new/", views.report_new, name="report_new"),
    path("new/<str:kind>/", views.report_new, name="report_request"),
    path("downloads/", views.download_list, name="download_list"),
    path("verify/", views.report_verify_page, name="verify"),
    path("ca.pem", views.trust_root_download, name="trust_root"),
    path("<uuid:report_id>/", views.report_detail, name="report_detail"),
    path("<uuid:report_id>/progress/", views.report_progress, name="report_progress"),
    path("<uuid:report_id>/download/", views.report_download, name="report_download"),
]
