"""Settings, all read from the environment (README: Settings).

Nothing here falls back silently: a bad value raises ImproperlyConfigured naming the variable.
The only defaults are the embedded ones `make run` needs on a fresh machine (an SQLite file and a
filesystem broker under var/), and those are stated in the README.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from reviewapp.env import env_bool, env_http_url, env_int, env_list, env_secret, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_secret("SECRET_KEY")
_GENERATED_KEY_FILE = VAR_DIR / "secret-key"  # written once by `make setup`
if not SECRET_KEY and _GENERATED_KEY_FILE.exists():
    SECRET_KEY = _GENERATED_KEY_FILE.read_text().strip()
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set: set SECRET_KEY (or SECRET_KEY_FILE) to a long random string, "
            f"run `make setup` to generate {_GENERATED_KEY_FILE}, or set DEBUG=true for local "
            "development."
        )
    SECRET_KEY = "insecure-development-key-used-only-with-DEBUG=true"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

WEB_PORT = env_int("WEB_PORT", 8000, minimum=1, maximum=65535)
DEMO_AGENT_PORT = env_int("DEMO_AGENT_PORT", 8001, minimum=1, maximum=65535)
# Where this app is reached; used for absolute links such as a deployment's review_app_url.
SITE_URL = env_http_url("SITE_URL", f"http://127.0.0.1:{WEB_PORT}")
DEMO_AGENT_URL = env_http_url("DEMO_AGENT_URL", f"http://127.0.0.1:{DEMO_AGENT_PORT}")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "reviewapp.apps.ReviewAppConfig",
    "agents",
    "feedback",
    "review",
    "inference_tables",
    "dashboards",
    "evaluation",
    "manifests",
]

# Django's own, plus a 503 for an exhausted database pool (reviewapp/middleware.py).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "reviewapp.middleware.DatabaseBusyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "reviewapp.urls"
WSGI_APPLICATION = "reviewapp.wsgi.application"
ASGI_APPLICATION = "reviewapp.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "builtins": ["template_partials.templatetags.partials"],
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "reviewapp.context_processors.roles",
            ],
        },
    },
]


# PostgreSQL under ASGI: connections per web process in each pool (Django's, and the chat
# lean paths' own, reviewapp/pg_loop.py), and how long a request waits for one before a 503.
DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 8, minimum=1)
DATABASE_POOL_TIMEOUT = env_int("DATABASE_POOL_TIMEOUT", 5, minimum=1)


def _database_from_env() -> dict:
    default_url = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
    url = env_str("DATABASE_URL", default_url)
    try:
        config = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"DATABASE_URL={url!r} is not a database URL ({exc}); use e.g. "
            "postgres://user@127.0.0.1:5432/reviewapp or sqlite:///var/db.sqlite3."
        ) from None
    engine = config.get("ENGINE", "")
    if engine not in ("django.db.backends.postgresql", "django.db.backends.sqlite3"):
        raise ImproperlyConfigured(
            f"DATABASE_URL={url!r} names an unsupported database: use postgres:// or sqlite:///."
        )
    if engine == "django.db.backends.postgresql" and os.environ.get("REVIEWAPP_SERVER") == "asgi":
        # Under ASGI every request may run in a thread of its own, so persistent connections
        # are never reused and pile up until PostgreSQL refuses more ("too many clients").
        # psycopg's pool hands each request a connection and takes it back after.
        # A request that finds the pool empty for DATABASE_POOL_TIMEOUT seconds is answered
        # 503 with Retry-After (reviewapp.middleware), not a 500 after psycopg's 30 s.
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {
            "pool": {
                "min_size": 1,
                "max_size": DATABASE_POOL_SIZE,
                "timeout": DATABASE_POOL_TIMEOUT,
            }
        }
    if engine == "django.db.backends.sqlite3":
        if config["NAME"] and config["NAME"] != ":memory:":
            Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        config["CONN_MAX_AGE"] = 0
        # Several processes (web, worker, beat) share one file: wait for locks, don't fail. WAL
        # lets readers go on while one writes, so a few users at once never see "database is
        # locked"; `synchronous=NORMAL` is WAL's safe setting (a power cut may lose the last
        # commits, never corrupt the file).
        config["OPTIONS"] = {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    return config


DATABASES = {"default": _database_from_env()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
# "home" sends each role to its own start page (reviewapp.views.home).
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

REST_FRAMEWORK = {
    # Token first so that an anonymous API call gets 401 with a WWW-Authenticate header.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "reviewapp.authentication.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "reviewapp.api.exception_handler",
    # DRF's JSON parser with a cap on nesting depth: too deep is a 400, not a RecursionError.
    "DEFAULT_PARSER_CLASSES": [
        "reviewapp.jsonlimits.DepthLimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Review App API",
    "DESCRIPTION": "Deployments, chat turns, traces and ratings of deployed AI agents.",
    "VERSION": "1",
    # OpenAPI 3.1: a nullable object is `oneOf: [{$ref}, {type: null}]`, exact where 3.0's
    # `nullable` beside an `allOf` is ignored by strict validators (OpenAPI 3.0.3 §4.7.25).
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The served URLs, with the chat turn's documentation view in place of its async view.
    "SERVE_URLCONF": "reviewapp.api_schema_urls",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "reviewapp.openapi.exact_schema",
    ],
    # One name per choice set, so generated clients get stable enum types (two fields sharing a
    # set, like agent_schema and detected_schema, would otherwise get a guessed name).
    "ENUM_NAME_OVERRIDES": {
        "AgentSchemaEnum": "agents.models.AgentSchema",
        "EndpointKindEnum": "agents.models.EndpointKind",
        "AuthKindEnum": "agents.models.AuthKind",
        "HealthStatusEnum": "agents.models.Health",
        "FeedbackSinkEnum": "agents.models.FeedbackSink",
        "DeploymentFeedbackSinkEnum": "agents.models.deployment.FEEDBACK_SINK_CHOICES",
        "DeliveryStatusEnum": "feedback.models.DeliveryStatus",
        "InputTypeEnum": "feedback.models.InputType",
        "LabelKindEnum": "feedback.models.LabelKind",
        "ChatRoleEnum": "agents.chat_apis.CHAT_ROLES",
        "ReviewSessionStateEnum": "review.models.SessionState",
        "ReviewItemStateEnum": "review.session_selectors.ITEM_STATES",
    },
}

# --- Celery -------------------------------------------------------------------------------------
# Default: kombu's filesystem transport under var/, a broker that needs no server. Tasks always go
# through a broker and a worker; there is no eager mode to fall back to.
_BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp", "filesystem")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.split("://", 1)[0] not in _BROKER_SCHEMES or "://" not in CELERY_BROKER_URL:
    raise ImproperlyConfigured(
        f"CELERY_BROKER_URL={CELERY_BROKER_URL!r} is not supported: use redis://127.0.0.1:6379/0, "
        "amqp://guest@127.0.0.1//, or leave it unset for the embedded filesystem broker."
    )
CELERY_TASK_ALWAYS_EAGER = False
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_IGNORE_RESULT = True  # state lives in our own rows
CELERY_TASK_ACKS_LATE = True  # every task claims its row first, so a redelivery is harmless
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 120
CELERY_TASK_TIME_LIMIT = 150
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = 10
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup closes the database connection around every task unless told to reuse
# it; a backlog's thousands of short tasks then spend most of their time connecting.
# CONN_MAX_AGE and its health checks still retire old or broken connections.
CELERY_DB_REUSE_MAX = 1000
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Longer than any task plus the longest retry countdown, so Redis never redelivers a message
    # that is still being worked on (Celery docs: redis.rst, Caveats).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * 3600}

# Chat turns: the request log keeps raw bodies up to this size (longer ones are cut and flagged),
# and an agent's answer larger than AGENT_MAX_REPLY_BYTES is refused.
REQUEST_LOG_MAX_BODY_BYTES = env_int("REQUEST_LOG_MAX_BODY_BYTES", 10_000_000, minimum=1000)
AGENT_MAX_REPLY_BYTES = env_int("AGENT_MAX_REPLY_BYTES", 50_000_000, minimum=1000)
# JSON nested deeper than this (API bodies, forms, custom_inputs, agent replies) is refused with
# a clear error (reviewapp/jsonlimits.py); Python's own limit of ~1000 levels would be a crash.
JSON_MAX_DEPTH = env_int("JSON_MAX_DEPTH", 64, minimum=8, maximum=500)
# Connections the one shared agent client may hold open at once (per process): every turn in
# flight holds one, so this caps the turns in flight per process.
AGENT_MAX_CONNECTIONS = env_int("AGENT_MAX_CONNECTIONS", 2000, minimum=1)
# Chat turns one web process carries at once; past it a turn is refused at once with 503 and
# Retry-After (agents/turns/admission.py), before anything is written.
CHAT_MAX_TURNS_IN_FLIGHT = env_int("CHAT_MAX_TURNS_IN_FLIGHT", 2000, minimum=1)
# On PostgreSQL, the API's lean paths (chat turns, ratings) await their everyday statements on
# the event loop with psycopg's async driver (reviewapp/pg_loop.py; a pool of its own,
# DATABASE_POOL_SIZE connections per web process) instead of the ORM in a thread; 0 keeps them
# on the ORM.
API_DB_ASYNC = env_bool("API_DB_ASYNC", True)
# Threads for the database steps of API turns (agents/turns/db.py): at most the pool's size,
# so turns alone never empty the pool.
TURN_DB_THREADS = min(
    env_int("TURN_DB_THREADS", 4, minimum=1),
    DATABASES["default"].get("OPTIONS", {}).get("pool", {}).get("max_size", 4),
)

# How often the beat process re-checks whether each deployment's endpoint answers.
REACHABILITY_CHECK_SECONDS = env_int("REACHABILITY_CHECK_SECONDS", 300, minimum=10)

# Forwarding ratings (feedback.delivery). A failed post that may succeed later (no answer, 5xx,
# 429) is tried again after RETRY_BASE * 2^(attempt-1) seconds, jittered, at most RETRY_MAX
# apart, until GIVE_UP_AFTER seconds after the rating; a claim older than LEASE is taken back
# (its worker died); beat sweeps for due deliveries whose broker message was lost.
DELIVERY_RETRY_BASE_SECONDS = env_int("DELIVERY_RETRY_BASE_SECONDS", 10, minimum=1)
DELIVERY_RETRY_MAX_SECONDS = env_int("DELIVERY_RETRY_MAX_SECONDS", 3600, minimum=1, maximum=3600)
DELIVERY_GIVE_UP_AFTER_SECONDS = env_int("DELIVERY_GIVE_UP_AFTER_SECONDS", 86400, minimum=60)
# How long "Next" keeps an item for a reviewer; after that another reviewer may take it.
REVIEW_LEASE_SECONDS = env_int("REVIEW_LEASE_SECONDS", 900, minimum=10)
DELIVERY_LEASE_SECONDS = env_int("DELIVERY_LEASE_SECONDS", 300, minimum=1)
DELIVERY_SWEEP_SECONDS = env_int("DELIVERY_SWEEP_SECONDS", 60, minimum=1)
DELIVERY_TIMEOUT_SECONDS = env_int("DELIVERY_TIMEOUT_SECONDS", 30, minimum=1, maximum=120)
DELIVERY_BATCH_SIZE = env_int("DELIVERY_BATCH_SIZE", 100, minimum=1, maximum=1000)
DELIVERY_BATCH_MAX_BYTES = env_int("DELIVERY_BATCH_MAX_BYTES", 4_000_000, minimum=10_000)
# How long one task goes on sending a deployment's backlog, batch after batch (well inside the
# task's soft time limit).
DELIVERY_DRAIN_SECONDS = env_int("DELIVERY_DRAIN_SECONDS", 20, minimum=0, maximum=60)
if DELIVERY_LEASE_SECONDS <= DELIVERY_TIMEOUT_SECONDS:
    raise ImproperlyConfigured(
        f"DELIVERY_LEASE_SECONDS={DELIVERY_LEASE_SECONDS} must be longer than "
        f"DELIVERY_TIMEOUT_SECONDS={DELIVERY_TIMEOUT_SECONDS}, or a slow post would be sent twice."
    )

# Batch and evaluation runs (evaluation/lanes.py). A run's `concurrency` is split into lanes of
# at most RUN_LANE_WIDTH rows in flight, one Celery task each; a lane hands over to a new task
# after RUN_LANE_SECONDS; a row's claim is renewed while it is worked and taken back by another
# lane RUN_LEASE_SECONDS after its worker died; beat restarts a run whose lanes all stopped.
RUN_DEFAULT_CONCURRENCY = env_int("RUN_DEFAULT_CONCURRENCY", 8, minimum=1)
RUN_MAX_CONCURRENCY = env_int("RUN_MAX_CONCURRENCY", 512, minimum=1)
RUN_LANE_WIDTH = env_int("RUN_LANE_WIDTH", 32, minimum=1, maximum=1000)
RUN_LANE_SECONDS = env_int("RUN_LANE_SECONDS", 60, minimum=1, maximum=3600)
RUN_LEASE_SECONDS = env_int("RUN_LEASE_SECONDS", 30, minimum=3)
RUN_SWEEP_SECONDS = env_int("RUN_SWEEP_SECONDS", 30, minimum=1)

# Turns answered in the background (Agent Runtime, LongRunningAgentServer; agents/background/):
# beat sweeps every BACKGROUND_RUN_SWEEP_SECONDS for runs whose turns are not finished, and asks
# the agent about each at most every BACKGROUND_RUN_CHECK_SECONDS; a run still going
# BACKGROUND_RUN_MAX_SECONDS after its turn began is given up.
BACKGROUND_RUN_SWEEP_SECONDS = env_int("BACKGROUND_RUN_SWEEP_SECONDS", 5, minimum=1)
BACKGROUND_RUN_CHECK_SECONDS = env_int("BACKGROUND_RUN_CHECK_SECONDS", 10, minimum=1)
BACKGROUND_RUN_MAX_SECONDS = env_int("BACKGROUND_RUN_MAX_SECONDS", 3600, minimum=10)

CELERY_BEAT_SCHEDULE = {
    "deployments-check-reachability": {
        "task": "agents.tasks.deployments_check_reachability",
        "schedule": REACHABILITY_CHECK_SECONDS,
    },
    "deliveries-sweep": {
        "task": "feedback.tasks.deliveries_sweep",
        "schedule": DELIVERY_SWEEP_SECONDS,
    },
    "runs-sweep": {"task": "evaluation.tasks.runs_sweep", "schedule": RUN_SWEEP_SECONDS},
    "background-runs-sweep": {
        "task": "agents.tasks.background_runs_sweep",
        "schedule": BACKGROUND_RUN_SWEEP_SECONDS,
    },
}

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}
