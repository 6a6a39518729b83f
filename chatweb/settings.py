"""chatweb settings, read from the environment in this one place.

Every value has a safe embedded default so a fresh machine runs with no
configuration: SQLite in ``data/``, the in-memory channel layer and the bundled
local model. ``DATABASE_URL`` and ``REDIS_URL`` switch to PostgreSQL and Redis.
"""

import base64
import hashlib
import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# django-environ reads a value that starts with "$" as the name of another variable, and a
# SECRET_KEY from Django's own generator starts with "$" once in 50: it was silently replaced
# by a key of this machine's, so sessions and provider keys did not survive between workers.
# Every value is taken as written: each "$" is escaped, and django-environ unescapes it.
env.ENVIRON = {name: value.replace("$", r"\$") for name, value in os.environ.items()}
env.escape_proxy = True

DATA_DIR = Path(env.str("CHATWEB_DATA_DIR", default=str(BASE_DIR / "data")))

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    # A per-installation key kept beside the SQLite file, so sessions survive restarts
    # without anyone having to invent a secret for a local run.
    _key_file = DATA_DIR / "secret_key"
    if not _key_file.exists():
        from django.core.management.utils import get_random_secret_key

        DATA_DIR.mkdir(parents=True, exist_ok=True)
        _key_file.write_text(get_random_secret_key())
        _key_file.chmod(0o600)
    SECRET_KEY = _key_file.read_text().strip()

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Production behind a TLS-terminating reverse proxy: HTTPS=1 makes cookies secure and
# turns on HSTS and the redirect to https; the proxy must set X-Forwarded-Proto.
HTTPS = env.bool("HTTPS", default=False)
BEHIND_PROXY = env.bool("BEHIND_PROXY", default=HTTPS)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "template_partials",
    "axes",
    "csp",
    "django_htmx",
    "conversations",
]

MIDDLEWARE = [
    "conversations.core.logs.request_log_middleware",
    "conversations.core.queries.nul_query_middleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
    "conversations.web.errors.DomainErrorMiddleware",
]

ROOT_URLCONF = "chatweb.urls"

# Content-Security-Policy on every page (django-csp): scripts, styles, frames, forms and
# connections from this origin only. No page has inline script or <style> (behaviour is in
# static/chatweb-*.js, attached by event delegation; htmx is told not to inject its indicator
# <style> and never to eval, in base.html's htmx-config). 'self' in connect-src covers the
# page's own ws:/wss: origin (CSP Level 3; Chromium and Firefox match it).
# The one exception is style attributes, and only these exact values, allowed by hash
# ('unsafe-hashes' admits only attributes whose hash is listed): markdown-it writes a table
# column's alignment as style="text-align:…" in replies (conversations/core/rendering.py).
# Any other style attribute, and every inline script and <style>, is refused.
CSP_ALLOWED_STYLE_ATTRIBUTES = ["text-align:left", "text-align:center", "text-align:right"]


def _csp_hash(value: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(value.encode()).digest()).decode() + "'"


CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-hashes'", *map(_csp_hash, CSP_ALLOWED_STYLE_ATTRIBUTES)],
        "img-src": ["'self'", "data:", "blob:"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
    },
}

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
                "conversations.web.context.theme",
            ],
        },
    },
]

ASGI_APPLICATION = "chatweb.asgi.application"

DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'chatweb.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the page read while a generation writes; the timeout rides out short locks.
    # Connections persist: a new one re-reads the schema on its first query and closing
    # the last one checkpoints the WAL, together ~4 ms per /v1 call (bench/gateway.py).
    # The process's shared sync thread (sockets, generations, /v1) keeps one; a page's
    # per-request thread drops its connection with the thread.
    DATABASES["default"]["CONN_MAX_AGE"] = None
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A bounded pool per worker process, reused by requests, sockets and generations
    # (persistent per-thread connections would leak under ASGI's per-request threads).
    # CONN_HEALTH_CHECKS gives the pool psycopg_pool's check (ConnectionPool.check_connection): each
    # connection is checked as it leaves the pool, so one that PostgreSQL dropped (a restart) is
    # replaced instead of failing the request that got it. A request waits at most 4 s for one:
    # under Daphne's 5 s websocket handshake timeout, so a handshake during an outage is answered
    # with a close code the page explains rather than dropped.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env.int("DB_POOL_SIZE", default=10),
        "timeout": 4,
    }

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    # Every socket waits for its messages in a blocking pop of 5 s (channels-redis's
    # brpop_timeout). redis-py 8's default read timeout of 5 s failed idle sockets; any read
    # timeout around that pop also loses a few of the cancellations a closing socket sends it
    # (the reader then never ends), so reads have none: TCP keepalive (redis-py's 30 s idle and
    # 3 probes 5 s apart) finds a peer that vanished, health checks and retried reconnects
    # replace connections a Redis restart dropped, and connecting is bounded.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": None,
                        "socket_connect_timeout": 5,
                        "socket_keepalive": True,
                        "health_check_interval": 10,
                        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.1), 3),
                    }
                ],
                "capacity": 1500,
                "expiry": 60,
                # Lets several chatweb installations share one Redis.
                "prefix": env.str("CHANNEL_LAYER_PREFIX", default="chatweb"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "conversations.core.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 1500, "expiry": 60},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Failed sign-ins (the site's and the admin's) are throttled by django-axes: after
# LOGIN_FAILURE_LIMIT failures for one username, or from one client address, that username or
# address is locked out for LOGIN_LOCKOUT_MINUTES (429 with a page saying so). Admins see and
# clear lockouts under Axes → Access attempts. A success resets that username's count.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "conversations.accounts.auth.PasswordBackend"]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "conversations.accounts.users.login_client_address"
AXES_DISABLE_ACCESS_LOG = True  # failures are kept; a log of every successful sign-in is not needed
AXES_VERBOSE = False

# Single sign-on through an OpenID Connect provider (conversations.accounts.oidc.OidcBackend, built on
# mozilla-django-oidc): on when OIDC_ISSUER is set. The provider's endpoints come from its discovery
# document; the code flow always uses PKCE (S256), a state and a nonce; users are linked by `sub`.
OIDC_ISSUER = env.str("OIDC_ISSUER", default="").rstrip("/")
OIDC_RP_CLIENT_ID = env.str("OIDC_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env.str("OIDC_CLIENT_SECRET", default="")
OIDC_RP_SCOPES = env.str("OIDC_SCOPES", default="openid email profile")
OIDC_RP_SIGN_ALGO = env.str("OIDC_SIGN_ALGO", default="RS256")
OIDC_GROUPS_CLAIM = env.str("OIDC_GROUPS_CLAIM", default="groups")  # empty: groups are not synced
OIDC_PROVIDER_NAME = env.str("OIDC_PROVIDER_NAME", default="single sign-on")  # "Sign in with <this>"
OIDC_USE_PKCE = True
OIDC_USE_NONCE = True
OIDC_TIMEOUT = env.float("OIDC_TIMEOUT", default=10.0)
if OIDC_ISSUER:
    AUTHENTICATION_BACKENDS.append("conversations.accounts.oidc.OidcBackend")
# PASSWORD_LOGIN=0 turns password sign-in off for everyone but BREAK_GLASS_USERNAME (a local admin kept
# for when the identity provider is down); sign-ups close with it.
PASSWORD_LOGIN = env.bool("PASSWORD_LOGIN", default=True)
BREAK_GLASS_USERNAME = env.str("BREAK_GLASS_USERNAME", default="")

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Attachments (images and documents in messages) live in their own storage: files under the data
# dir by default, or an S3-compatible bucket (django-storages) when ATTACHMENTS_S3_BUCKET is set,
# for several workers. Files are only ever served through the app's owner-checking view.
ATTACHMENTS_S3_BUCKET = env.str("ATTACHMENTS_S3_BUCKET", default="")
if ATTACHMENTS_S3_BUCKET:
    STORAGES["attachments"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": ATTACHMENTS_S3_BUCKET,
            "endpoint_url": env.str("ATTACHMENTS_S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("ATTACHMENTS_S3_REGION", default="") or None,
            "access_key": env.str("ATTACHMENTS_S3_ACCESS_KEY_ID", default="") or None,
            "secret_key": env.str("ATTACHMENTS_S3_SECRET_ACCESS_KEY", default="") or None,
            "location": env.str("ATTACHMENTS_S3_PREFIX", default="attachments"),
            "default_acl": "private",
            "file_overwrite": False,
        },
    }
else:
    STORAGES["attachments"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(DATA_DIR / "attachments")},
    }
# Limits, shown in the composer: bytes per file, files per message, bytes a user may keep in all.
ATTACHMENTS = {
    "MAX_FILE_BYTES": env.int("ATTACHMENT_MAX_BYTES", default=10 * 1024 * 1024),
    "MAX_FILES": env.int("ATTACHMENT_MAX_FILES", default=10),
    "USER_MAX_BYTES": env.int("ATTACHMENT_USER_MAX_BYTES", default=500 * 1024 * 1024),
    # Images are downscaled to this long side; larger (in pixels) than IMAGE_MAX_PIXELS are refused unread.
    "IMAGE_MAX_SIDE": env.int("ATTACHMENT_IMAGE_MAX_SIDE", default=2048),
    "IMAGE_MAX_PIXELS": env.int("ATTACHMENT_IMAGE_MAX_PIXELS", default=50_000_000),
    # Extracted text kept from one document, in characters.
    "MAX_TEXT_CHARS": env.int("ATTACHMENT_MAX_TEXT_CHARS", default=2_000_000),
}
WHITENOISE_USE_FINDERS = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Requests larger than this are refused before they reach a view.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BYTES", default=2 * 1024 * 1024)

# --- Providers and the completions service -------------------------------------------

# Encrypts provider API keys at rest; defaults to a key derived from SECRET_KEY.
ENCRYPTION_KEY = env.str("ENCRYPTION_KEY", default="")

# Bootstrapped into the Provider/ChatModel tables by `manage.py sync_providers`.
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="https://api.openai.com/v1")
LOCAL_MODEL = env.bool("LOCAL_MODEL", default=True)
LOCAL_MODEL_HOST = env.str("LOCAL_MODEL_HOST", default="127.0.0.1")
LOCAL_MODEL_PORT = env.int("LOCAL_MODEL_PORT", default=8001)
# Written by the local model's supervisor (python -m conversations.providers.localmodel), read by /readyz and the admin.
LOCAL_MODEL_STATE_FILE = DATA_DIR / "local-model.json"

COMPLETIONS = {
    "CONNECT_TIMEOUT": env.float("UPSTREAM_CONNECT_TIMEOUT", default=10.0),
    # Longest silence tolerated between two bytes from the provider.
    "READ_TIMEOUT": env.float("UPSTREAM_READ_TIMEOUT", default=120.0),
    "MAX_RETRIES": env.int("UPSTREAM_MAX_RETRIES", default=2),
    "BACKOFF_BASE": env.float("UPSTREAM_BACKOFF_BASE", default=0.5),
    "BACKOFF_MAX": env.float("UPSTREAM_BACKOFF_MAX", default=8.0),
    # A Retry-After longer than this is not waited for: the error goes to the user.
    "RETRY_AFTER_MAX": env.float("UPSTREAM_RETRY_AFTER_MAX", default=60.0),
}

# The longest chat reply kept, in characters: a reply that grows past it is cut there and ends
# saying so, so no provider can fill the database and every tab with one endless answer.
CHAT_REPLY_MAX_CHARS = env.int("CHAT_REPLY_MAX_CHARS", default=500_000)

# How often a streaming reply's text is written to the database.
STREAM_SAVE_INTERVAL = env.float("STREAM_SAVE_INTERVAL", default=1.0)
# Each worker refreshes its replies' heartbeat this often; a reply whose heartbeat is older
# than STREAM_STALE_AFTER lost its worker and is marked interrupted by a surviving one.
STREAM_WATCHDOG = env.bool("STREAM_WATCHDOG", default=True)
STREAM_HEARTBEAT_INTERVAL = env.float("STREAM_HEARTBEAT_INTERVAL", default=5.0)
STREAM_STALE_AFTER = env.float("STREAM_STALE_AFTER", default=20.0)

# How long a worker may answer from its cache of keys, models, prices and limits after
# another worker changed them (conversations/core/rowcache.py).
# A deployment failing COOLDOWN_FAILURES times within FAILURE_WINDOW seconds is skipped for
# COOLDOWN_SECONDS (providers/routes.py), in Redis when REDIS_URL is set so that workers agree.
ROUTING = {
    "COOLDOWN_FAILURES": env.int("ROUTING_COOLDOWN_FAILURES", default=3),
    "FAILURE_WINDOW": env.float("ROUTING_FAILURE_WINDOW", default=60.0),
    "COOLDOWN_SECONDS": env.float("ROUTING_COOLDOWN_SECONDS", default=30.0),
}

ROW_CACHE_SECONDS = env.float("ROW_CACHE_SECONDS", default=5.0)

# Site-wide usage limits; each user's limits (set in the admin) override them. Unset: unlimited.
USAGE_DEFAULTS = {
    "monthly_budget": Decimal(env.str("DEFAULT_MONTHLY_BUDGET")) if env.str("DEFAULT_MONTHLY_BUDGET", "") else None,
    "requests_per_minute": env.int("DEFAULT_REQUESTS_PER_MINUTE", default=None),
    "tokens_per_minute": env.int("DEFAULT_TOKENS_PER_MINUTE", default=None),
}
# Output tokens reserved against budgets and token limits when a request sets no max_tokens.
USAGE_RESERVE_OUTPUT_TOKENS = env.int("USAGE_RESERVE_OUTPUT_TOKENS", default=512)

# /metrics answers only a scraper sending "Authorization: Bearer <METRICS_TOKEN>"; unset, it is a 404.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Series per user (labelled with the user's id): off, as they grow with the number of users.
METRICS_PER_USER = env.bool("METRICS_PER_USER", default=False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {
            "()": "conversations.core.logs.TextFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "conversations.core.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": env.str("LOG_FORMAT", default="text")},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        # Its warning per failed connection attempt would repeat the one line chatweb logs per outage.
        "psycopg.pool": {"level": "ERROR"},
        # Django's own request logging would repeat chatweb.requests' line for errors.
        "django.request": {"level": "ERROR"},
        "axes": {"level": "WARNING"},  # a line per failed sign-in; lockouts are in the admin
    },
}

# Imports of conversation exports (ChatGPT, chatweb, Open WebUI): the largest file accepted, and
# how many conversations are written per transaction (progress is saved after each batch).
IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=200 * 1024 * 1024)
IMPORT_BATCH = env.int("IMPORT_BATCH", default=100)
# An import is read as a stream, never whole, and refused at the first level nested deeper than this (the
# same 100 as every other JSON input: a real export is a dozen deep) or text longer than this many
# characters (a message's text is kept up to CHAT_REPLY_MAX_CHARS).
IMPORT_MAX_DEPTH = env.int("IMPORT_MAX_DEPTH", default=100)
IMPORT_MAX_STRING = env.int("IMPORT_MAX_STRING", default=2_000_000)
