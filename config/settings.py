"""Consent Desk settings: one module, every value from the environment.

Every variable read here is listed in README.md. Defaults are the embedded
ones that `make demo` runs on: SQLite under var/, a serverless broker, zohosim.
"""

from __future__ import annotations

import os
from pathlib import Path

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
# The fallback key exists for the embedded demo and the tests; production sets
# SECRET_KEY (and `manage.py check --deploy` says so when it does not).
SECRET_KEY = os.environ.get("SECRET_KEY") or "django-insecure-embedded-demo-key-set-SECRET_KEY-in-production"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_tables2",
    "compliance",
    "sync",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "compliance:login"
LOGIN_REDIRECT_URL = "compliance:home"
LOGOUT_REDIRECT_URL = "compliance:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
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
    "DEFAULT_THROTTLE_RATES": {"api_client": os.environ.get("API_THROTTLE_RATE", "100000/min")},
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
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
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
# Seal hashes are appended here too, outside the database (write-once storage in production).
LEDGER_SEAL_LOG = Path(os.environ.get("LEDGER_SEAL_LOG", VAR_DIR / "seals.log"))

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
ZOHO_CRM_API_VERSION = os.environ.get("ZOHO_CRM_API_VERSION", "v8")
ZOHO_TIMEOUT_S = float(os.environ.get("ZOHO_TIMEOUT_S", "30"))

# Sync behaviour.
CONSENT_VERIFY_DELAY_S = env_int("CONSENT_VERIFY_DELAY_S", 60)
SYNC_MAX_RETRIES = env_int("SYNC_MAX_RETRIES", 3)
SYNC_RETRY_BASE_S = env_int("SYNC_RETRY_BASE_S", 60)
DISCREPANCY_ALERT_THRESHOLD = env_int("DISCREPANCY_ALERT_THRESHOLD", 10)
SYNC_CREATE_MISSING_IN_CRM = env_bool("SYNC_CREATE_MISSING_IN_CRM", False)
SYNC_OUTBOX_LEASE_S = env_int("SYNC_OUTBOX_LEASE_S", 600)
# A committed change queues a push this many seconds later (changes meanwhile join it);
# the periodic sweep is the safety net. The ledger calls LEDGER_OUTBOX_NOTIFY after commit.
SYNC_PUSH_ON_COMMIT = env_bool("SYNC_PUSH_ON_COMMIT", True)
SYNC_PUSH_DELAY_S = env_int("SYNC_PUSH_DELAY_S", 1)
LEDGER_OUTBOX_NOTIFY = os.environ.get("LEDGER_OUTBOX_NOTIFY", "sync.kick.outbox_kick")
# Quota: Zoho counts credits per org over a rolling 24 h; the sync keeps its own budget,
# one shared per-second rate (Redis through CACHE_URL), and a shared cool-down after a 429.
ZOHO_QUOTA_ENABLED = env_bool("ZOHO_QUOTA_ENABLED", True)
ZOHO_DAILY_CREDITS = env_int("ZOHO_DAILY_CREDITS", 100_000)
ZOHO_CREDITS_RESERVE_FRACTION = float(os.environ.get("ZOHO_CREDITS_RESERVE_FRACTION", "0.2"))
ZOHO_RATE_LIMIT_PER_S = env_int("ZOHO_RATE_LIMIT_PER_S", 10)
ZOHO_RATE_SHARE_OPT_IN = float(os.environ.get("ZOHO_RATE_SHARE_OPT_IN", "0.8"))
ZOHO_RATE_SHARE_RECONCILE = float(os.environ.get("ZOHO_RATE_SHARE_RECONCILE", "0.5"))
ZOHO_429_COOLDOWN_S = float(os.environ.get("ZOHO_429_COOLDOWN_S", "2"))
ZOHO_429_COOLDOWN_MAX_S = float(os.environ.get("ZOHO_429_COOLDOWN_MAX_S", "60"))
ZOHO_QUOTA_MAX_WAIT_S = float(os.environ.get("ZOHO_QUOTA_MAX_WAIT_S", "30"))
ZOHO_OFF_PEAK_HOURS = os.environ.get("ZOHO_OFF_PEAK_HOURS", "0-6")
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
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT_S", 7200)}
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://", "sqs://"))
    else {}
)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT_S", 240)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT_S", 300)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CAMPAIGNS_PULL_INTERVAL_S = env_int("CAMPAIGNS_PULL_INTERVAL_S", 15 * 60)
# Each entry expires before its next run, so a backlog never piles up duplicates.
CELERY_BEAT_SCHEDULE = {
    "outbox-sweep": {"task": "sync.outbox_sweep", "schedule": 30.0, "options": {"expires": 25}},
    "verify-due": {"task": "sync.verify_due", "schedule": 30.0, "options": {"expires": 25}},
    "retry-due": {"task": "sync.retry_due", "schedule": 60.0, "options": {"expires": 55}},
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
    "expire-due-consents": {
        "task": "compliance.expire_due",
        "schedule": crontab(minute=30),
        "options": {"expires": 3000},
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
