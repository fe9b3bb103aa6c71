from csp.decorators import csp_update
from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from config.health import healthz

# The API docs pages run Swagger UI and Redoc, which inject their own styles (and Redoc a
# worker); only there does the CSP allow that. Scripts stay files: the split view serves
# Swagger UI's start-up script at its own URL instead of inline.
docs_page = csp_update({"style-src": ["'unsafe-inline'"], "worker-src": ["blob:"]})

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # Before compliance's: the overview is the home page ("/").
    path("", include("workbench.urls")),
    path("", include("compliance.urls")),
    # The public lifecycle pages (/c/, /u/, /p/ <token>; no login) and the demo's sent-mail page.
    path("", include("compliance.lifecycle.urls")),
    path("sync/", include("sync.urls")),
    path("reports/", include("reports.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("compliance.api.urls")),
    # The schema answers API clients (with their key) and people who logged in (SERVE_PERMISSIONS);
    # the docs pages send anyone else to the login page.
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/docs/",
        login_required(docs_page(SpectacularSwaggerSplitView.as_view(url_name="schema"))),
        name="api-docs",
    ),
    path(
        "api/redoc/",
        login_required(docs_page(SpectacularRedocView.as_view(url_name="schema"))),
        name="api-redoc",
    ),
]
