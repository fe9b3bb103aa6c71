"""Consent Desk settings: one module, every value from the environment.

Every variable read here is listed in README.md. Defaults are the embedded
ones that `make demo` runs on: SQLite under var/, a serverless broker, zohosim.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CONSENT_DESK_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from exc


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# No built-in key: sessions, CSRF tokens and the OTP sessions are signed with it. Only a
# DEBUG run (a developer's laptop) may fall back on an insecure one; `make demo` and
# `make test` give theirs (var/secret-key, made once), pytest its own (tests/settings.py).
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it to a long random value (python -c 'import secrets; "
            "print(secrets.token_urlsafe(50))'), or DEBUG=true on a development machine."
        )
    SECRET_KEY = "django-insecure-development-only-key"
# Rotation: the previous keys, still accepted for signatures made before (docs/operations.md).
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "compliance.apps.ConsentDeskAdminConfig",  # django.contrib.admin, with the role-checking site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "csp",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "health_check",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_tables2",
    "django_filters",
    "compliance",
    "sync",
    "reports",
    "workbench",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    # After OTP: these read request.user.is_verified().
    "compliance.logins.SessionTimeoutMiddleware",
    "compliance.logins.SecondFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "compliance.logins.NoStoreMiddleware",
    # Last, as django-axes asks: it turns a lockout raised by the backend into its answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "compliance.context_processors.roles",
                "sync.context_processors.alerts",
            ],
        },
    },
]

# django-tables2's table, its rows written by one template tag (compliance/templatetags/desk_tables.py).
DJANGO_TABLES2_TEMPLATE = "desk_table.html"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'consentdesk.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers proceed while one writer holds the lock; the busy
    # timeout makes concurrent writers wait instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not the in-memory default: the ledger's concurrency tests write
    # from several connections at once, as the demo's processes do.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-consentdesk-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": env_int("PASSWORD_MIN_LENGTH", 12)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes checks every login attempt first (it must be the first backend).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "compliance:login"
LOGIN_REDIRECT_URL = "workbench:overview"
LOGOUT_REDIRECT_URL = "compliance:login"

# Logins (compliance/logins.py). Lockout after AXES_FAILURE_LIMIT failures, counted per
# username and, separately, per IP address, for AXES_COOLOFF_MINUTES.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_MINUTES = env_int("AXES_COOLOFF_MINUTES", 30)
AXES_COOLOFF_TIME = AXES_COOLOFF_MINUTES / 60  # hours, as django-axes wants it
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
# The startup banner on every manage.py command is noise; lockouts are logged (compliance/logins.py).
AXES_VERBOSE = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# Lockout and unlock log lines name the account and the address: an operator needs both to act.
AXES_SENSITIVE_PARAMETERS: list[str] = []
# The client's address, for lockouts and the access log (compliance.logins.client_ip).
AXES_CLIENT_IP_CALLABLE = "compliance.logins.client_ip"
# A second factor (TOTP) is required of these roles' members (and of superusers), and
# asked of anyone else who has set one up.
REQUIRE_2FA_ROLES = env_list("REQUIRE_2FA_ROLES", "admin")
OTP_TOTP_ISSUER = os.environ.get("OTP_TOTP_ISSUER", "Consent Desk")
# A session ends SESSION_LIFETIME_S after the login, or SESSION_IDLE_TIMEOUT_S after the last request.
SESSION_LIFETIME_S = env_int("SESSION_LIFETIME_S", 8 * 3600)
SESSION_IDLE_TIMEOUT_S = env_int("SESSION_IDLE_TIMEOUT_S", 30 * 60)
SESSION_COOKIE_AGE = SESSION_LIFETIME_S

# The access log's key for hashing search terms (compliance/services/access_log.py).
ACCESS_LOG_QUERY_KEY = os.environ.get("ACCESS_LOG_QUERY_KEY", "") or SECRET_KEY

# Production (README, "Production"): behind a TLS-terminating proxy, set all five.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
# Trust the proxy's X-Forwarded-Proto: only behind a proxy that sets it (and strips the client's).
# Set, the client's address is also taken from the last X-Forwarded-For entry (the one our
# proxy added), not from REMOTE_ADDR (the proxy's own).
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("SECURE_PROXY_SSL_HEADER", False) else None
)
# /healthz answers the load balancer over plain HTTP, before any redirect.
SECURE_REDIRECT_EXEMPT = [r"^healthz/?$"]
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): no inline scripts or styles anywhere, nothing from
# other origins. The API docs pages are the one exception for styles (config/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# On for the public lifecycle pages (compliance/lifecycle), which pick English or German from
# Accept-Language themselves; no LocaleMiddleware, so the staff pages stay in English.
USE_I18N = True
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise serves static files from the app server (no CDN, no separate web server).
# It serves var/static after `collectstatic` and falls back to the apps' own files.
WHITENOISE_USE_FINDERS = True

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT_S", 30)
# The file backend's directory (EMAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend; `make demo`).
EMAIL_FILE_PATH = os.environ.get("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "consent-desk@localhost")
COMPLIANCE_ALERT_EMAILS = env_list("COMPLIANCE_ALERT_EMAILS", "compliance@localhost")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "compliance.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["compliance.api.throttling.ApiClientRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "api_client": os.environ.get("API_THROTTLE_RATE", "100000/min"),
        # Reads have a budget of their own: walking ids is how a stolen key would harvest people.
        "api_read": os.environ.get("API_READ_THROTTLE_RATE", "600/min"),
    },
    "EXCEPTION_HANDLER": "compliance.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Consent Desk API",
    "DESCRIPTION": "Record consent decisions and read a contact's consent state and history.",
    "VERSION": "1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
    # One name for the consent status choices, used by status and previous_status alike
    # (without it `check --deploy` warns drf_spectacular.W001).
    "ENUM_NAME_OVERRIDES": {"ConsentStatusEnum": "compliance.models.ConsentStatus"},
    # The schema and its docs pages: for people who log in (config/urls.py) and API clients.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
}

CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": os.environ["CACHE_URL"]}
        if os.environ.get("CACHE_URL")
        # Shared by every process on one machine; production sets CACHE_URL to Redis so
        # that the Zoho access token and the rate limit are shared by all machines.
        else {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": VAR_DIR / "cache"}
    )
}

# The ledger.
CONSENT_OCCURRED_AT_SKEW_S = env_int("CONSENT_OCCURRED_AT_SKEW_S", 300)
CONSENT_BATCH_MAX = env_int("CONSENT_BATCH_MAX", 1000)
# What one event's evidence may hold (it is stored forever), and one API request body.
EVIDENCE_MAX_BYTES = env_int("EVIDENCE_MAX_BYTES", 16 * 1024)
EVIDENCE_MAX_DEPTH = env_int("EVIDENCE_MAX_DEPTH", 10)
EVIDENCE_MAX_KEYS = env_int("EVIDENCE_MAX_KEYS", 200)
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 5 * 1024 * 1024)
# How long a rotated API key stays valid beside its successor.
API_KEY_ROTATION_GRACE_HOURS = env_int("API_KEY_ROTATION_GRACE_HOURS", 24)
# Files an admin attaches to a correction: kept under this directory, named by their SHA-256
# (which the event's evidence holds), at most this size, of these types (extension: MIME type).
CORRECTION_EVIDENCE_DIR = Path(os.environ.get("CORRECTION_EVIDENCE_DIR", VAR_DIR / "evidence"))
CORRECTION_EVIDENCE_MAX_BYTES = env_int("CORRECTION_EVIDENCE_MAX_BYTES", 10 * 1024 * 1024)
CORRECTION_EVIDENCE_TYPES = {
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".txt": "text/plain",
    ".eml": "message/rfc822",
}
# Seal hashes are appended here too, outside the database (write-once storage in production).
# Erasure (docs/erasure.md). The secrets that key the hashed identifiers an erasure leaves ("do
# not contact"): the first makes new ones, all are checked (rotation: put a new one first, keep
# the old ones). By default one derived from SECRET_KEY.
ERASURE_SUPPRESSION_SECRETS = env_list("ERASURE_SUPPRESSION_SECRETS")
# What an erasure does to the contact's Zoho CRM records (docs/erasure.md): delete them, anonymise
# them (personal fields neutral, consent fields opted out) or none (left as they are). The erased
# addresses leave every Campaigns list whichever it is.
ERASURE_ZOHO_ACTION = os.environ.get("ERASURE_ZOHO_ACTION", "anonymise")
if ERASURE_ZOHO_ACTION not in ("delete", "anonymise", "none"):
    raise ImproperlyConfigured(
        f"ERASURE_ZOHO_ACTION is one of delete, anonymise or none, not {ERASURE_ZOHO_ACTION!r}."
    )
# Years a contact's data is kept after the end of its last consent (a withdrawal or an expiry).
RETENTION_YEARS = env_int("RETENTION_YEARS", 7)
RETENTION_HOUR_UTC = env_int("RETENTION_HOUR_UTC", 4)

LEDGER_SEAL_LOG = Path(os.environ.get("LEDGER_SEAL_LOG", VAR_DIR / "seals.log"))

# The consent lifecycle (compliance/lifecycle): mails and the public pages they link to.
# Links are PUBLIC_BASE_URL/c|u|p/<token>, signed with the first of LINK_SIGNING_KEYS and
# accepted under any of them (rotation: put the new key first); none set: SECRET_KEY.
PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
LINK_SIGNING_KEYS = env_list("LINK_SIGNING_KEYS")
DOI_LINK_TTL_HOURS = env_int("DOI_LINK_TTL_HOURS", 168)
DOI_REMINDER_HOURS = env_int("DOI_REMINDER_HOURS", 48)
# A refresh request goes out this many days before an opt-in's refresh date (purpose validity).
REFRESH_NOTICE_DAYS = env_int("REFRESH_NOTICE_DAYS", 30)
# Unsubscribe and preference links live as long as the mails that carry them are read.
LINK_TTL_DAYS = env_int("LINK_TTL_DAYS", 400)
# Requests to the public link pages per client IP and minute.
LINK_RATE_LIMIT_PER_MIN = env_int("LINK_RATE_LIMIT_PER_MIN", 60)
LIFECYCLE_COMPANY_NAME = os.environ.get("LIFECYCLE_COMPANY_NAME", "Consent Desk demo organisation")
# The mailto: half of List-Unsubscribe; empty, only the one-click URL is given.
LIFECYCLE_UNSUBSCRIBE_MAILTO = os.environ.get("LIFECYCLE_UNSUBSCRIBE_MAILTO", "")
LIFECYCLE_MAIL_MAX_ATTEMPTS = env_int("LIFECYCLE_MAIL_MAX_ATTEMPTS", 5)
LIFECYCLE_MAIL_RETRY_BASE_S = env_int("LIFECYCLE_MAIL_RETRY_BASE_S", 60)
# Queue a mail's send task once its row commits (off: the lifecycle cycle sends it within minutes).
LIFECYCLE_SEND_ON_COMMIT = env_bool("LIFECYCLE_SEND_ON_COMMIT", True)
# `make demo` sets it: admins get a "sent mail" page to click the links of the mails sent.
DEMO_MODE = env_bool("DEMO_MODE", False)

# Zoho. ZOHO_DC picks the accounts, API and Campaigns hosts (sync/zoho/datacenters.py);
# the three *_URL variables override them (zohosim sets all three to its own URL).
ZOHO_DC = os.environ.get("ZOHO_DC", "us")
ZOHO_ACCOUNTS_URL = os.environ.get("ZOHO_ACCOUNTS_URL", "")
ZOHO_API_DOMAIN = os.environ.get("ZOHO_API_DOMAIN", "")
ZOHO_CAMPAIGNS_URL = os.environ.get("ZOHO_CAMPAIGNS_URL", "")
ZOHO_CLIENT_ID = os.environ.get("ZOHO_CLIENT_ID", "")
ZOHO_CLIENT_SECRET = os.environ.get("ZOHO_CLIENT_SECRET", "")
ZOHO_REFRESH_TOKEN = os.environ.get("ZOHO_REFRESH_TOKEN", "")
ZOHO_CAMPAIGNS_LIST_KEYS = env_list("ZOHO_CAMPAIGNS_LIST_KEYS")
# A Campaigns list a re-permission run may add its addresses to (issue 11; empty: only mails).
ZOHO_REPERMISSION_LIST_KEY = os.environ.get("ZOHO_REPERMISSION_LIST_KEY", "")
ZOHO_CRM_API_VERSION = os.environ.get("ZOHO_CRM_API_VERSION", "v8")
ZOHO_TIMEOUT_S = float(os.environ.get("ZOHO_TIMEOUT_S", "30"))

# Sync behaviour.
CONSENT_VERIFY_DELAY_S = env_int("CONSENT_VERIFY_DELAY_S", 60)
SYNC_MAX_RETRIES = env_int("SYNC_MAX_RETRIES", 3)
SYNC_RETRY_BASE_S = env_int("SYNC_RETRY_BASE_S", 60)
DISCREPANCY_ALERT_THRESHOLD = env_int("DISCREPANCY_ALERT_THRESHOLD", 10)
SYNC_CREATE_MISSING_IN_CRM = env_bool("SYNC_CREATE_MISSING_IN_CRM", False)
SYNC_OUTBOX_LEASE_S = env_int("SYNC_OUTBOX_LEASE_S", 600)
# The stranded-change audit (sync.audit): how often beat runs it, and how far back it looks
# (contacts with a push made since then; the daily reconciliation covers the rest).
SYNC_AUDIT_INTERVAL_S = env_int("SYNC_AUDIT_INTERVAL_S", 300)
SYNC_AUDIT_WINDOW_S = env_int("SYNC_AUDIT_WINDOW_S", 24 * 3600)
# A committed change queues a push this many seconds later (changes meanwhile join it);
# the periodic sweep is the safety net. The ledger calls LEDGER_OUTBOX_NOTIFY after commit.
SYNC_PUSH_ON_COMMIT = env_bool("SYNC_PUSH_ON_COMMIT", True)
SYNC_PUSH_DELAY_S = env_int("SYNC_PUSH_DELAY_S", 1)
LEDGER_OUTBOX_NOTIFY = os.environ.get("LEDGER_OUTBOX_NOTIFY", "sync.kick.outbox_kick")
# API clients' webhooks (sync/webhooks.py): each POST's timeout, and the attempts of a
# delivery before it gives up (Celery retries with exponential backoff in between).
WEBHOOK_TIMEOUT_S = float(os.environ.get("WEBHOOK_TIMEOUT_S", "10"))
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 8)
# Quota: Zoho counts credits per org over a rolling 24 h; the sync keeps its own budget,
# one shared per-second rate (Redis through CACHE_URL), and a shared cool-down after a 429.
ZOHO_QUOTA_ENABLED = env_bool("ZOHO_QUOTA_ENABLED", True)
# What `ZohoClient.from_settings()` hands its transport to ask before each CRM call: a
# dotted path to a callable taking the cache prefix (sync/zoho never imports the engine).
ZOHO_QUOTA_GATE = os.environ.get("ZOHO_QUOTA_GATE", "sync.quota.gate")
ZOHO_DAILY_CREDITS = env_int("ZOHO_DAILY_CREDITS", 100_000)
ZOHO_CREDITS_RESERVE_FRACTION = float(os.environ.get("ZOHO_CREDITS_RESERVE_FRACTION", "0.2"))
ZOHO_RATE_LIMIT_PER_S = env_int("ZOHO_RATE_LIMIT_PER_S", 10)
ZOHO_RATE_SHARE_OPT_IN = float(os.environ.get("ZOHO_RATE_SHARE_OPT_IN", "0.8"))
ZOHO_RATE_SHARE_RECONCILE = float(os.environ.get("ZOHO_RATE_SHARE_RECONCILE", "0.5"))
ZOHO_429_COOLDOWN_S = float(os.environ.get("ZOHO_429_COOLDOWN_S", "2"))
ZOHO_429_COOLDOWN_MAX_S = float(os.environ.get("ZOHO_429_COOLDOWN_MAX_S", "60"))
ZOHO_QUOTA_MAX_WAIT_S = float(os.environ.get("ZOHO_QUOTA_MAX_WAIT_S", "30"))
ZOHO_OFF_PEAK_HOURS = os.environ.get("ZOHO_OFF_PEAK_HOURS", "0-6")
# Zoho Campaigns locks a method for 30 minutes past its limit (500 calls in 5 minutes for
# getlistsubscribers, listunsubscribe, contactdonotmail, listsubscriberscount; listsubscribe 500
# a minute, 12,500 an hour, 75,000 a day): every worker counts its calls in the shared cache and
# sends at most this share of each; a method Zoho refuses anyway is paused for every worker,
# ZOHO_CAMPAIGNS_COOLDOWN_S at first, doubling up to ZOHO_CAMPAIGNS_LOCK_S.
ZOHO_CAMPAIGNS_LIMIT_SHARE = float(os.environ.get("ZOHO_CAMPAIGNS_LIMIT_SHARE", "0.9"))
ZOHO_CAMPAIGNS_COOLDOWN_S = float(os.environ.get("ZOHO_CAMPAIGNS_COOLDOWN_S", "15"))
ZOHO_CAMPAIGNS_LOCK_S = float(os.environ.get("ZOHO_CAMPAIGNS_LOCK_S", "1800"))
# Who changed a CRM record: our API user (found through the API when unset), or a workflow.
ZOHO_API_USER_ID = os.environ.get("ZOHO_API_USER_ID", "")
ZOHO_WORKFLOW_USER_IDS = env_list("ZOHO_WORKFLOW_USER_IDS")
ZOHO_WORKFLOW_USER_NAME_PREFIXES = env_list("ZOHO_WORKFLOW_USER_NAME_PREFIXES", "Workflow")
CRM_AFTERMATH_WINDOW_S = env_int("CRM_AFTERMATH_WINDOW_S", 120)
RECONCILE_BULK_THRESHOLD = env_int("RECONCILE_BULK_THRESHOLD", 50_000)
RECONCILE_CHUNK = env_int("RECONCILE_CHUNK", 2000)
RECONCILE_BULK_POLL_S = float(os.environ.get("RECONCILE_BULK_POLL_S", "5"))
CAMPAIGNS_RECENT_LIMIT = env_int("CAMPAIGNS_RECENT_LIMIT", 20)
ZOHO_CUSTOM_FIELDS = {
    "sms_marketing": os.environ.get("ZOHO_FIELD_SMS", "SMS_Opt_In"),
    "profiling": os.environ.get("ZOHO_FIELD_PROFILING", "Profiling_Consent"),
    "third_party_sharing": os.environ.get("ZOHO_FIELD_THIRD_PARTY", "Third_Party_Sharing_Consent"),
    "bounce_reason": os.environ.get("ZOHO_FIELD_BOUNCE_REASON", "Email_Bounce_Reason"),
}
# Optional CRM fields the projection fills (empty: off): the email_marketing frequency (a custom
# picklist whose values come from the field's metadata) and the preference centre's URL (text or
# URL field, a merge tag for Campaigns templates).
ZOHO_FIELD_FREQUENCY = os.environ.get("ZOHO_FIELD_FREQUENCY", "")
ZOHO_FREQUENCY_PURPOSE = os.environ.get("ZOHO_FREQUENCY_PURPOSE", "email_marketing")
ZOHO_FIELD_PREFERENCES_URL = os.environ.get("ZOHO_FIELD_PREFERENCES_URL", "")
# A custom CRM field holding the app's user id, to link contacts known only by it ("": none).
ZOHO_FIELD_APP_USER_ID = os.environ.get("ZOHO_FIELD_APP_USER_ID", "")
# The CRM modules whose records hold people: "Contacts" (the default), or "Contacts,Leads" to
# link, push to and verify on Leads not yet converted as well (`sync.linking`).
ZOHO_MODULES = env_list("ZOHO_MODULES", "Contacts")
# Optional: a CRM record `zoho_doctor` may write and read back to probe for silent drops.
ZOHO_DIAGNOSTIC_RECORD_ID = os.environ.get("ZOHO_DIAGNOSTIC_RECORD_ID", "")
# Zoho CRM notifications (instant CRM changes): a channel calling PUBLIC_BASE_URL/sync/zoho/notify/,
# renewed by the daily reconciliation; polling stays the fallback. Off: polling only.
ZOHO_NOTIFICATIONS = env_bool("ZOHO_NOTIFICATIONS", False)

# Reports (reports/): signed PDF audit reports, evidence packs and samples.
REPORT_ORGANISATION = os.environ.get("REPORT_ORGANISATION", "Consent Desk demo organisation")
# Longest period a report may cover, in days.
REPORT_MAX_DAYS = env_int("REPORT_MAX_DAYS", 3660)
# A withdrawal must take effect in Zoho within this many business days (Mon-Fri).
OPT_OUT_DEADLINE_BUSINESS_DAYS = env_int("OPT_OUT_DEADLINE_BUSINESS_DAYS", 10)
# Public holidays that are not business days either (the `holidays` package's country code, e.g. "DE";
# empty: weekends only), and how many business days before the deadline its alert goes out.
COMPLIANCE_HOLIDAYS_COUNTRY = os.environ.get("COMPLIANCE_HOLIDAYS_COUNTRY", "").strip().upper()
OPT_OUT_ALERT_BUSINESS_DAYS = env_int("OPT_OUT_ALERT_BUSINESS_DAYS", 2)
# Most rows a table in a report's PDF lists; the rest is in its attachments.
REPORT_TABLE_MAX_ROWS = env_int("REPORT_TABLE_MAX_ROWS", 100)
REPORT_SAMPLE_MAX_SIZE = env_int("REPORT_SAMPLE_MAX_SIZE", 200)
# Largest PDF the verify page accepts (manage.py verify_report takes any size).
REPORT_UPLOAD_MAX_BYTES = env_int("REPORT_UPLOAD_MAX_BYTES", 50 * 1024 * 1024)
# The signing key: a PEM key, certificate and chain (each a file path or the PEM text itself), or a
# PKCS#12 file. None of them set: the demo CA's under REPORT_DEMO_SIGNING_DIR, which
# `manage.py create_signing_cert` makes. No key: no report (never an unsigned PDF).
REPORT_SIGNING_KEY = os.environ.get("REPORT_SIGNING_KEY", "")
REPORT_SIGNING_KEY_PASSWORD = os.environ.get("REPORT_SIGNING_KEY_PASSWORD", "")
REPORT_SIGNING_CERT = os.environ.get("REPORT_SIGNING_CERT", "")
REPORT_SIGNING_CHAIN = os.environ.get("REPORT_SIGNING_CHAIN", "")
REPORT_SIGNING_P12 = os.environ.get("REPORT_SIGNING_P12", "")
REPORT_SIGNING_P12_PASSWORD = os.environ.get("REPORT_SIGNING_P12_PASSWORD", "")
REPORT_DEMO_SIGNING_DIR = Path(os.environ.get("REPORT_DEMO_SIGNING_DIR", VAR_DIR / "signing"))
# The root certificate(s) verification pins (PEM bundle, path or text); empty: the root of
# REPORT_SIGNING_CHAIN (its self-signed certificate), else the demo CA.
REPORT_TRUST_ROOTS = os.environ.get("REPORT_TRUST_ROOTS", "")
# An RFC 3161 time-stamping authority: set, every signature is PAdES B-T instead of B-B.
REPORT_TSA_URL = os.environ.get("REPORT_TSA_URL", "")
REPORT_TSA_TIMEOUT_S = env_int("REPORT_TSA_TIMEOUT_S", 30)
# The report task's own time limits (a million-event report takes about two minutes).
REPORT_TASK_SOFT_TIME_LIMIT_S = env_int("REPORT_TASK_SOFT_TIME_LIMIT_S", 900)
REPORT_TASK_TIME_LIMIT_S = env_int("REPORT_TASK_TIME_LIMIT_S", 960)
# Where the report files are kept (Django's storage API; alias "reports" in STORAGES).
REPORT_STORAGE_BACKEND = os.environ.get(
    "REPORT_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"
)
REPORT_STORAGE_DIR = Path(os.environ.get("REPORT_STORAGE_DIR", VAR_DIR / "reports"))
# Our stored copies of report files are deleted this many days after they were made (0: kept for
# ever); the rows stay, so a copy handed out still verifies (reports.file_deletion, daily).
REPORT_FILE_RETENTION_DAYS = env_int("REPORT_FILE_RETENTION_DAYS", 365)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    # Read-only files: a report is written once and never changed.
    "reports": {
        "BACKEND": REPORT_STORAGE_BACKEND,
        "OPTIONS": (
            {"location": str(REPORT_STORAGE_DIR), "file_permissions_mode": 0o440}
            if REPORT_STORAGE_BACKEND == "django.core.files.storage.FileSystemStorage"
            else {}
        ),
    },
}

# Celery. The embedded default broker is SQLAlchemy on a SQLite file: no server
# to run. Production: CELERY_BROKER_URL=redis://… (or amqp://… for RabbitMQ).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", f"sqla+sqlite:///{VAR_DIR / 'celery-broker.sqlite3'}")
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# Every task is idempotent (it re-reads state by id), so a message is acknowledged
# only after the task ran, and redelivered if the worker process died meanwhile.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One message at a time per worker process: a killed worker loses at most one in flight
# and a slow batch does not hold back others.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redis redelivers an unacknowledged message after the visibility timeout; it must be
# longer than the longest countdown (retry backoff) and the hard time limit.
# (Only Redis and SQS brokers know this option; the SQLAlchemy transport would pass it
# to create_engine and fail, RabbitMQ redelivers on a lost connection instead.)
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = (
    {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT_S", 7200)}
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://", "sqs://"))
    else {}
)
# Redis: a worker takes its next message from its queues in their order (config/celery.py:
# the urgent one first), not in turn.
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS["queue_order_strategy"] = "priority"
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT_S", 240)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT_S", 300)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Task modules outside an app's tasks.py (autodiscovery finds only those).
CELERY_IMPORTS = ["compliance.lifecycle.tasks", "sync.tasks.optout_clock"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CAMPAIGNS_PULL_INTERVAL_S = env_int("CAMPAIGNS_PULL_INTERVAL_S", 15 * 60)
# Each entry expires before its next run, so a backlog never piles up duplicates.
CELERY_BEAT_SCHEDULE = {
    # /healthz's "last beat" (config/health.py).
    "beat-heartbeat": {"task": "ops.beat_heartbeat", "schedule": 60.0, "options": {"expires": 55}},
    "outbox-sweep": {"task": "sync.outbox_sweep", "schedule": 30.0, "options": {"expires": 25}},
    "verify-due": {"task": "sync.verify_due", "schedule": 30.0, "options": {"expires": 25}},
    "retry-due": {"task": "sync.retry_due", "schedule": 60.0, "options": {"expires": 55}},
    # The health page's call tallies of each hour, stored once the hour is final (10 min past).
    "callhour-tally": {
        "task": "sync.callhour_tally",
        "schedule": crontab(minute="*/5"),
        "options": {"expires": 240},
    },
    "sync-audit": {
        "task": "sync.audit",
        "schedule": float(SYNC_AUDIT_INTERVAL_S),
        "options": {"expires": max(SYNC_AUDIT_INTERVAL_S - 5, 1)},
    },
    "campaigns-pull": {
        "task": "sync.campaigns_pull",
        "schedule": float(CAMPAIGNS_PULL_INTERVAL_S),
        "options": {"expires": CAMPAIGNS_PULL_INTERVAL_S - 5},
    },
    "reconcile-daily": {
        "task": "sync.reconcile",
        "schedule": crontab(hour=env_int("RECONCILE_HOUR_UTC", 3), minute=0),
        "options": {"expires": 3600},
    },
    "seal-ledger": {"task": "compliance.seal_ledger", "schedule": 3600.0, "options": {"expires": 3000}},
    # Erasures left pending by a crash, completed (compliance.services.erasure).
    "erasure-retry": {"task": "compliance.erasure_retry", "schedule": 300.0, "options": {"expires": 290}},
    # The Zoho part of erasures not done yet: a lost run, or the job's own backoff (sync.erasure_zoho).
    "erasure-zoho-due": {"task": "sync.erasure_zoho_due", "schedule": 60.0, "options": {"expires": 55}},
    # Contacts past RETENTION_YEARS since the end of their last consent, erased.
    "retention-daily": {
        "task": "compliance.retention_erase",
        "schedule": crontab(hour=RETENTION_HOUR_UTC, minute=30),
        "options": {"expires": 3600},
    },
    # An erased person's address or number still in the Zoho call log (an on-commit masking lost
    # to a crash), masked; after retention-daily, which erases.
    "erased-calls-daily": {
        "task": "sync.erased_calls_mask",
        "schedule": crontab(hour=RETENTION_HOUR_UTC, minute=40),
        "options": {"expires": 3600},
    },
    # Stored report files past REPORT_FILE_RETENTION_DAYS, or made before a person they name was
    # erased (a lost erasure-time deletion), deleted; after retention-daily, which erases.
    "report-files-daily": {
        "task": "reports.files_sweep",
        "schedule": crontab(hour=RETENTION_HOUR_UTC, minute=45),
        "options": {"expires": 3600},
    },
    # The overview's and trends page's consent tallies per day (compliance.tallies).
    "consent-day-tally": {
        "task": "workbench.consent_day_tally",
        "schedule": crontab(minute="*/5"),
        "options": {"expires": 240},
    },
    # The nightly `verify_ledger` check, its verdict recorded (compliance.verify_runs).
    "verify-ledger-nightly": {
        "task": "workbench.verify_ledger",
        "schedule": crontab(hour=env_int("VERIFY_LEDGER_HOUR_UTC", 2), minute=15),
        "options": {"expires": 6 * 3600},
    },
    "expire-due-consents": {
        "task": "compliance.expire_due",
        "schedule": crontab(minute=30),
        "options": {"expires": 3000},
    },
    # Due confirmation mails, reminders (compliance/lifecycle; `manage.py lifecycle_now` by hand).
    "lifecycle-cycle": {"task": "lifecycle.cycle", "schedule": 300.0, "options": {"expires": 280}},
    # Withdrawals' clocks kept up to date, and the alert two business days before a deadline.
    "optout-clock": {"task": "sync.optout_clock", "schedule": 60.0, "options": {"expires": 55}},
}

# /healthz fails when beat's heartbeat (run every minute by a worker) is older than this.
HEALTH_BEAT_MAX_AGE_S = env_int("HEALTH_BEAT_MAX_AGE_S", 300)

# Logs: no personal data. E-mail addresses and phone numbers are masked in every record and its
# traceback (config/logs.py), and httpx/httpcore, which log each request's URL (a CRM search URL
# holds the address), log warnings only. LOG_FORMAT=json writes one JSON object a line, for a log collector.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text")
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"mask_personal_data": {"()": "config.logs.MaskPersonalData"}},
    "formatters": {
        "json": {
            "()": "config.logs.MaskingJsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "text": {"()": "config.logs.MaskingFormatter", "fmt": "%(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["mask_personal_data"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
