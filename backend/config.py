"""Herald's settings: one pydantic-settings class, environment prefix ``HERALD_``.

Development defaults work with no ``.env``. Outside development the settings refuse
placeholder secrets, so a production deployment cannot start with the demo signing key.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me"  # noqa: S105
PLACEHOLDER_MARKERS = ("change-me", "changeme", "placeholder", "dev-only")


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class SmtpTls(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    SSL = "ssl"


class JwtAlgorithm(StrEnum):
    HS256 = "HS256"
    RS256 = "RS256"


class SmtpRelay(BaseModel):
    """A fallback SMTP relay, tried after ``smtp_host`` (and the fallbacks before it) failed."""

    name: str = Field(min_length=1, max_length=50)
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: SmtpTls = SmtpTls.NONE


class SmsProvider(BaseModel):
    """A fallback SMS webhook provider, tried after ``sms_provider_url`` failed."""

    name: str = Field(min_length=1, max_length=50)
    url: str
    token: SecretStr | None = None


class ChatProvider(BaseModel):
    """A chat provider of one chat channel (Slack, Telegram, Discord, Teams), in the order
    tried: what it needs depends on the channel (see ``backend.channels.chat``).

    Slack: ``token`` (a bot token, ``chat.postMessage`` at ``url`` or https://slack.com/api)
    or, without a token, ``url`` an incoming webhook. Telegram: ``token`` (the bot token) and
    optionally ``url``, the Bot API server (https://api.telegram.org). Discord: ``url``, a
    channel webhook. Teams: ``url``, an incoming webhook or a Workflows (Power Automate) URL."""

    name: str = Field(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$")
    token: SecretStr | None = None
    url: SecretStr | None = None


class FcmProvider(BaseModel):
    """A Firebase Cloud Messaging (HTTP v1) provider: a service account of the project."""

    name: str = Field(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$")
    project_id: str = Field(min_length=1)
    # The service account's JSON key file, as one JSON string (client_email, private_key,
    # private_key_id, token_uri).
    service_account: SecretStr
    # Where the OAuth2 token and the messages go: Google's unless set (a local stand-in).
    token_uri: str | None = None
    url: str = "https://fcm.googleapis.com"


class ApnsProvider(BaseModel):
    """An Apple Push Notification service provider: a ``.p8`` token signing key."""

    name: str = Field(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$")
    team_id: str = Field(min_length=1)
    key_id: str = Field(min_length=1)
    private_key: SecretStr  # the .p8 file's PEM text
    topic: str = Field(min_length=1)  # the app's bundle id
    # api.push.apple.com (production) or api.sandbox.push.apple.com; Apple also answers on
    # port 2197, a fallback for networks that block 443.
    url: str = "https://api.push.apple.com"


DEV_UNSUBSCRIBE_SECRET = "dev-only-insecure-unsubscribe-secret-change-me"  # noqa: S105
DEV_FORGET_HASH_KEY = "dev-only-insecure-forget-hash-key-change-me"
DEV_TRACKING_SECRET = "dev-only-insecure-tracking-secret-change-me"  # noqa: S105
DEV_BOUNCE_SECRET = "dev-only-insecure-bounce-secret-change-me"  # noqa: S105


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HERALD_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
    )

    environment: Environment = Environment.DEVELOPMENT

    # Stores and broker
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/herald"
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    redis_url: str = "redis://127.0.0.1:6379/0"
    history_url: str | None = None

    # The auth service: user profiles and the key that verifies its tokens
    auth_url: str = "http://127.0.0.1:8001"
    auth_user_path: str = "/api/v1/auth/users/user-details/{user_id}"
    jwt_algorithm: JwtAlgorithm = JwtAlgorithm.HS256
    jwt_secret: SecretStr | None = SecretStr(DEV_JWT_SECRET)
    jwt_public_key: str | None = None
    jwt_private_key: SecretStr | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: int = Field(default=0, ge=0, le=300)
    # The claim that binds a token to one tenant (see the README's "Tenants"): a token holding
    # it sees and changes only that tenant's data. Tokens without it are not bound.
    jwt_tenant_claim: str = Field(default="tenant", min_length=1, max_length=100)
    # Keys from the auth service's JWKS instead of one configured public key (RS256 only).
    jwt_jwks_url: str | None = None
    # How long a fetched key set is used before it is fetched again.
    jwt_jwks_cache_seconds: float = Field(default=300.0, gt=0)
    # A token naming an unknown `kid` refetches the key set at most this often, so that forged
    # kids cannot make Herald hammer the provider.
    jwt_jwks_min_refresh_seconds: float = Field(default=30.0, ge=0)
    jwt_jwks_timeout_seconds: float = Field(default=3.0, gt=0)
    # API keys: a key is trusted from a process's cache this long at most; revocations reach
    # every process at once over Redis pub/sub, this bounds a missed message.
    api_key_cache_seconds: float = Field(default=60.0, ge=0)
    # A key's `lastUsedAt` is written at most this often per process.
    api_key_touch_seconds: float = Field(default=60.0, ge=0)

    auth_users_list_path: str = "/api/v1/auth/users"
    # Many profiles in one request (POST {"ids": [...]} -> {"items": [...]}), where the auth
    # service offers it; empty: one request per profile.
    auth_bulk_profiles_path: str = ""
    auth_bulk_batch_size: int = Field(default=100, ge=1, le=1000)
    # Requests to the auth service in flight at once, per process.
    auth_concurrency: int = Field(default=20, ge=1, le=200)
    auth_api_token: SecretStr | None = None
    auth_timeout_seconds: float = Field(default=3.0, gt=0)
    auth_retries: int = Field(default=2, ge=0, le=10)
    user_cache_ttl_seconds: int = Field(default=300, ge=0)
    # Recipients (PostgreSQL): a stored profile older than this is fetched again from the auth
    # service on its next use; how many profiles one page of `herald recipients sync` asks for.
    recipient_max_age_seconds: int = Field(default=86_400, ge=0)
    recipient_sync_page_size: int = Field(default=500, ge=1, le=5000)
    # A running sync whose runner committed no page for this long is stalled: a worker or
    # syncRecipients may take it over and go on from its last committed page.
    recipient_sync_stall_seconds: float = Field(default=120.0, gt=0)

    # Email
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: SmtpTls = SmtpTls.NONE
    smtp_pool_size: int = Field(default=4, ge=1, le=64)
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    email_from: str = "Herald <noreply@herald.localhost>"

    # What email providers say back: bounces and complaints (backend.services.email_feedback).
    # With a bounce domain, each email's envelope sender (Return-Path) is
    # ``<local part>+<delivery id>.<tag>@<domain>`` (VERP), so a bounce names its delivery.
    email_bounce_domain: str | None = None
    # At most 16 characters: with "+", the 36 of the delivery id and the 11 of its tag, the
    # VERP local part stays within the 64 that RFC 5321 allows (longer ones servers refuse).
    email_bounce_local_part: str = Field(default="bounces", pattern=r"^[A-Za-z0-9._-]{1,16}$")
    # The HMAC key of the tag after the delivery id in VERP addresses and Message-IDs, so a
    # report over SMTP cannot name a delivery Herald did not send it about. None: a key
    # derived from the HS256 JWT secret (required with RS256 and a bounce domain in production).
    bounce_secret: SecretStr | None = None
    # ``herald bounces``: the SMTP listener that takes delivery status notifications (RFC
    # 3464) and complaint reports (ARF) for the bounce domain.
    bounce_smtp_host: str = "127.0.0.1"
    bounce_smtp_port: int = Field(default=2525, ge=1, le=65535)
    bounce_max_message_bytes: int = Field(default=10_000_000, ge=10_000)
    # Amazon SES through SNS: the hosts SigningCertURL and SubscribeURL may name (a regular
    # expression matched against the whole host name), the topics accepted (empty: any), and a
    # CA bundle for those HTTPS requests (None: the system's trust store).
    sns_allowed_host_pattern: str = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"
    sns_topic_arns: list[str] = Field(default_factory=list)
    sns_ca_file: str | None = None
    sns_timeout_seconds: float = Field(default=5.0, gt=0)
    # SendGrid Event Webhook: the verification key SendGrid shows (base64 DER or PEM, ECDSA
    # P-256); None refuses every SendGrid event.
    sendgrid_webhook_public_key: str | None = None
    # Postmark has no signatures: its webhook URL carries these basic auth credentials.
    postmark_webhook_username: str | None = None
    postmark_webhook_password: SecretStr | None = None
    # Mailgun: the HTTP webhook signing key; events older than the window are refused, and a
    # token is accepted once.
    mailgun_webhook_signing_key: SecretStr | None = None
    # Which providers' metadata headers outgoing email carries for them to echo back the
    # delivery id (X-SMTPAPI, X-Mailgun-Variables, X-PM-Metadata-*, X-SES-MESSAGE-TAGS). None:
    # those whose event webhook is configured (SES: when HERALD_SNS_TOPIC_ARNS names topics).
    # Message-ID and X-Herald-Delivery-Id are always set.
    email_provider_headers: list[Literal["ses", "sendgrid", "mailgun", "postmark"]] | None = None
    # How old a signed SendGrid or Mailgun event may be (seconds; also its clock skew).
    email_feedback_max_age_seconds: float = Field(default=600.0, gt=0)

    # SMS: a JSON webhook provider
    sms_provider_url: str = "http://127.0.0.1:8002/sms"
    sms_provider_token: SecretStr | None = None
    sms_sender: str = "Herald"
    sms_timeout_seconds: float = Field(default=5.0, gt=0)

    # Provider failover: fallbacks after the provider above, in priority order (JSON lists),
    # and the circuit breaker that skips a failing provider for a while.
    smtp_fallbacks: list[SmtpRelay] = Field(default_factory=list)
    sms_fallbacks: list[SmsProvider] = Field(default_factory=list)
    breaker_failure_threshold: int = Field(default=5, ge=1, le=1000)
    breaker_open_seconds: float = Field(default=30.0, gt=0)

    # Unsubscribe links and the hosted preference page
    public_url: str = "http://127.0.0.1:8000"
    # None: a key derived from the HS256 JWT secret (required with RS256 in production).
    unsubscribe_secret: SecretStr | None = None
    unsubscribe_link_ttl_days: int = Field(default=60, ge=1, le=3650)
    unsubscribe_mailto: str | None = None

    # Email open and click tracking (off by default; never on critical event types)
    email_track_opens: bool = False
    email_track_clicks: bool = False
    # None: a key derived from the HS256 JWT secret (required with RS256 in production).
    tracking_secret: SecretStr | None = None

    # Status webhooks
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1, le=30)
    webhook_retry_base_seconds: float = Field(default=10.0, gt=0)
    webhook_retry_max_seconds: float = Field(default=3600.0, gt=0)
    webhook_cache_seconds: float = Field(default=5.0, ge=0)
    # None: private, loopback and link-local targets allowed outside production only.
    webhook_allow_private_targets: bool | None = None

    # Web Push (VAPID)
    vapid_private_key: SecretStr | None = None
    vapid_public_key: str | None = None
    vapid_subject: str = "mailto:admin@herald.localhost"
    push_timeout_seconds: float = Field(default=5.0, gt=0)

    # Chat channels: each a JSON list of providers ({"name", "token", "url"}, see ChatProvider),
    # tried in that order (failover); an empty list leaves the channel unconfigured, its
    # deliveries failing with that reason.
    slack_providers: list[ChatProvider] = Field(default_factory=list)
    telegram_providers: list[ChatProvider] = Field(default_factory=list)
    discord_providers: list[ChatProvider] = Field(default_factory=list)
    teams_providers: list[ChatProvider] = Field(default_factory=list)
    chat_timeout_seconds: float = Field(default=10.0, gt=0)

    # Mobile push: device tokens of Android apps go to FCM, of iOS apps to APNs (to FCM when
    # no APNs provider is set); each a JSON list of providers tried in order (failover).
    fcm_providers: list[FcmProvider] = Field(default_factory=list)
    apns_providers: list[ApnsProvider] = Field(default_factory=list)
    mobile_push_timeout_seconds: float = Field(default=10.0, gt=0)

    # Webhook channel: the rendered message POSTed to the recipient's WEBHOOK address, else to
    # its event type's URL here (JSON object {"<event type>": "<url>"}, "*" for any other),
    # signed as status webhooks are (Standard Webhooks) with this secret (whsec_<base64>).
    # Timeouts and the private-target guard are the status webhooks' settings.
    webhook_channel_targets: dict[str, str] = Field(default_factory=dict)
    webhook_channel_secret: SecretStr | None = None

    # Observability
    log_format: str = Field(default="text", pattern="^(text|json)$")
    log_level: str = Field(default="INFO", pattern="(?i)^(debug|info|warning|error|critical)$")
    otlp_endpoint: str | None = None
    worker_metrics_port: int = Field(default=9100, ge=0, le=65535)

    # Admin page: served by `herald api` at /admin/ in development (nginx serves it in compose)
    serve_admin: bool | None = None
    # The admin page's "Sign in with the auth service" form: it posts the login and password to
    # HERALD_AUTH_URL + the login path, trades the refresh token at the refresh path, and revokes
    # it at the logout path when the person signs out.
    admin_auth_service_form: bool = True
    auth_login_path: str = "/api/v1/auth/session/login"
    auth_refresh_path: str = "/api/v1/auth/session/refresh"
    # Where the page sends the refresh token when the person signs out; empty: nowhere.
    auth_logout_path: str = "/api/v1/auth/session/logout"

    # Single sign-on with OpenID Connect (the admin page; the API accepts the provider's JWT
    # access tokens). None turns it off.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_scopes: str = "openid profile"
    # The audience the provider puts in its access tokens for Herald (a resource indicator);
    # it must differ from the client id, so that an ID token is never taken for an access token.
    oidc_audience: str | None = None
    oidc_algorithm: JwtAlgorithm = JwtAlgorithm.RS256
    # The claim that carries the person's roles, dotted for a nested one
    # ("realm_access.roles"), and its values mapped to Herald's roles; others are ignored.
    oidc_roles_claim: str = "roles"
    oidc_role_map: dict[str, str] = Field(default_factory=dict)
    # What the admin page's button says: "Sign in with <label>".
    oidc_label: str = "single sign-on"
    # The <herald-inbox> demo page at /demo/inbox (signs in through the auth-service stand-in)
    serve_demo: bool | None = None

    # Ingestion and delivery
    publish_timeout_seconds: float = Field(default=5.0, gt=0)
    max_inflight_publishes: int = Field(default=1000, ge=1)
    idempotency_ttl_seconds: int = Field(default=86_400, ge=60)
    delivery_max_attempts: int = Field(default=5, ge=1, le=50)
    retry_base_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=300.0, gt=0)
    delivery_batch_size: int = Field(default=200, ge=1, le=5000)
    # An event for more users than this is dispatched in parts of this size, one message
    # each, so that every worker process takes a share of a broadcast.
    dispatch_part_size: int = Field(default=1000, ge=100, le=100_000)
    delivery_lease_seconds: float = Field(default=60.0, gt=0)
    # The dispatch queue is consumed by `herald worker`'s dispatch consumers (not its Celery
    # pool): this many processes (0: as many as the Celery pool has), each taking up to
    # dispatch_batch_size messages at a time, waiting at most dispatch_batch_wait_ms for more
    # once one arrived, with dispatch_prefetch messages unacknowledged at most.
    dispatch_consumers: int = Field(default=0, ge=0, le=64)
    dispatch_batch_size: int = Field(default=100, ge=1, le=1000)
    dispatch_batch_wait_ms: float = Field(default=2.0, ge=0, le=1000)
    dispatch_prefetch: int = Field(default=200, ge=1, le=10_000)
    # Batches a dispatch consumer runs at most at once, and how long a batch runs before the
    # next may start beside it. While they run, what arrives waits, so the next batch takes
    # all of it: under load batches grow and each event costs less, while an event on a quiet
    # queue still goes at once. A batch held up (a slow auth service) holds the others up for
    # dispatch_batch_overlap_ms at most.
    dispatch_batches_in_flight: int = Field(default=2, ge=1, le=64)
    dispatch_batch_overlap_ms: float = Field(default=25.0, ge=0, le=60_000)
    # Messages a dispatch consumer runs one by one (an email event, a workflow step, a re-run)
    # at most at once: few, as a Celery pool process runs one task at a time, so that a
    # delivery's first run ends well within its lease.
    dispatch_alone_concurrency: int = Field(default=4, ge=1, le=256)
    # The event loop of every worker process (Celery pool processes and dispatch consumers):
    # uvloop, as the API has through uvicorn, or Python's own asyncio loop.
    worker_event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    # Retention (0 = keep forever). History: the MongoDB TTL index, or the PostgreSQL sweep.
    history_retention_days: int = Field(default=180, ge=0)
    inbox_retention_days: int = Field(default=0, ge=0)
    # The sweep deletes at most this many rows per statement, one transaction each.
    retention_batch_size: int = Field(default=5000, ge=100, le=50_000)
    retention_sweep_seconds: float = Field(default=3600.0, ge=60)
    # Forgetting a user: the HMAC key that turns their id into the one-way hash kept on
    # their history rows. Changing it splits a forgotten user's old and new hashes.
    # None: a key derived from the HS256 JWT secret (required with RS256 in production).
    forget_hash_key: SecretStr | None = None

    # Campaigns
    campaign_page_size: int = Field(default=1000, ge=1, le=1000)
    campaign_stall_seconds: float = Field(default=60.0, gt=0)
    campaign_reconcile_seconds: float = Field(default=30.0, gt=0)

    # Workflows: how long a worker advancing a run holds it (a run whose worker died is taken
    # up again by the release sweep after that), and how many due runs one sweep releases.
    workflow_run_lease_seconds: float = Field(default=60.0, gt=0)
    workflow_release_batch_size: int = Field(default=500, ge=1, le=10_000)
    # Runs one `workflows.advance` message carries: a worker takes them through their steps
    # side by side, one transaction a step for all of them.
    workflow_advance_batch_size: int = Field(default=100, ge=1, le=1000)
    # An event starting at most this many runs takes them through their first steps in its
    # own dispatch task (no broker hop); 0 hands every run to a task of its own.
    workflow_inline_runs: int = Field(default=20, ge=0, le=1000)

    # HTTP API
    graphiql: bool | None = None
    introspection: bool = True
    max_query_depth: int = Field(default=12, ge=1)
    max_aliases: int = Field(default=30, ge=1)
    max_tokens: int = Field(default=2000, ge=10)
    max_expanded_fields: int = Field(default=2000, ge=10)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    # Answer single-field queries and mutations read for leaves (sendEvent) from compiled
    # plans instead of graphql-core's executor machinery (backend/schema/plans.py).
    graphql_plans: bool = True
    ws_max_subscriptions: int = Field(default=5, ge=1)
    ws_connection_init_timeout_seconds: float = Field(default=5.0, gt=0)
    ws_max_subscriptions_per_user: int = Field(default=10, ge=1)
    # Rate limits (token buckets in Redis; a rate of 0 turns a limit off)
    event_rate_per_second: float = Field(default=2000.0, ge=0)
    event_rate_burst: int = Field(default=10_000, ge=1)
    ws_connect_rate_per_second: float = Field(default=20.0, ge=0)
    ws_connect_burst: int = Field(default=200, ge=1)
    live_queue_size: int = Field(default=256, ge=8)
    # Test environment only: the live hub listens on a per-process fault channel, and a message
    # there makes it fail as an unexpected exception would (backend/realtime.py).
    live_hub_fault_injection: bool = False
    # The API freezes what survives each full garbage collection (backend/gc_policy.py) and
    # reclaims cycles among frozen objects this often; 0 leaves the collector as it is.
    gc_full_collection_seconds: float = Field(default=900.0, ge=0)
    allowed_origins: list[str] = Field(
        default_factory=lambda: ["http://localhost:8000", "http://127.0.0.1:8000"]
    )

    @property
    def is_development(self) -> bool:
        return self.environment is Environment.DEVELOPMENT

    @property
    def graphiql_enabled(self) -> bool:
        return self.is_development if self.graphiql is None else self.graphiql

    @property
    def webhook_private_targets_allowed(self) -> bool:
        if self.webhook_allow_private_targets is None:
            return self.environment is not Environment.PRODUCTION
        return self.webhook_allow_private_targets

    @property
    def serve_demo_enabled(self) -> bool:
        return self.is_development if self.serve_demo is None else self.serve_demo

    @property
    def serve_admin_enabled(self) -> bool:
        return self.is_development if self.serve_admin is None else self.serve_admin

    def _key(self, setting: SecretStr | None, purpose: bytes, development: str) -> bytes:
        """An HMAC key: the setting, else derived from the JWT secret for ``purpose`` (a
        separate key for a separate purpose), else the development one."""
        if setting is not None:
            return setting.get_secret_value().encode()
        if self.jwt_algorithm is JwtAlgorithm.HS256 and self.jwt_secret is not None:
            secret = self.jwt_secret.get_secret_value().encode()
            return hmac.new(secret, purpose, hashlib.sha256).digest()
        return development.encode()

    @property
    def unsubscribe_key(self) -> bytes:
        """The HMAC key of unsubscribe links (see :meth:`_key`)."""
        return self._key(
            self.unsubscribe_secret, b"herald/unsubscribe-links", DEV_UNSUBSCRIBE_SECRET
        )

    @property
    def tracking_key(self) -> bytes:
        """The HMAC key of open and click tracking links (see :meth:`_key`)."""
        return self._key(self.tracking_secret, b"herald/tracking-links", DEV_TRACKING_SECRET)

    @property
    def bounce_key(self) -> bytes:
        """The HMAC key of the delivery tags in VERP addresses and Message-IDs (see
        :meth:`_key`)."""
        return self._key(self.bounce_secret, b"herald/bounce-addresses", DEV_BOUNCE_SECRET)

    @property
    def forget_key(self) -> bytes:
        """The HMAC key of forgotten users' hashes (see :meth:`_key`)."""
        return self._key(self.forget_hash_key, b"herald/forgotten-user-ids", DEV_FORGET_HASH_KEY)

    @property
    def history_backend(self) -> str:
        if self.history_url and self.history_url.startswith(("mongodb://", "mongodb+srv://")):
            return "mongodb"
        return "postgresql"

    @model_validator(mode="after")
    def _check_fallbacks(self) -> Settings:
        for label, primary, names in (
            ("HERALD_SMTP_FALLBACKS", "smtp", [r.name for r in self.smtp_fallbacks]),
            ("HERALD_SMS_FALLBACKS", "sms-webhook", [p.name for p in self.sms_fallbacks]),
            *(
                (f"HERALD_{channel.upper()}_PROVIDERS", "", [p.name for p in providers])
                for channel, providers in self.chat_providers.items()
            ),
            (
                "HERALD_FCM_PROVIDERS / HERALD_APNS_PROVIDERS",
                "",
                [p.name for p in self.fcm_providers] + [p.name for p in self.apns_providers],
            ),
        ):
            if len(set(names)) != len(names) or primary in names:
                raise ValueError(
                    f"{label}: provider names must be unique and differ from '{primary}'"
                )
        return self

    @property
    def chat_providers(self) -> dict[str, list[ChatProvider]]:
        """Each chat channel's providers, by channel name (``slack``, ``telegram``...)."""
        return {
            "slack": self.slack_providers,
            "telegram": self.telegram_providers,
            "discord": self.discord_providers,
            "teams": self.teams_providers,
        }

    @model_validator(mode="after")
    def _check_test_only(self) -> Settings:
        if self.live_hub_fault_injection and self.environment is not Environment.TEST:
            raise ValueError("HERALD_LIVE_HUB_FAULT_INJECTION is for the test environment only")
        return self

    @model_validator(mode="after")
    def _check_oidc(self) -> Settings:
        if self.oidc_issuer is None:
            return self
        if not self.oidc_issuer.startswith(("https://", "http://")):
            raise ValueError("HERALD_OIDC_ISSUER must be an http(s) URL")
        if self.environment is Environment.PRODUCTION and not self.oidc_issuer.startswith(
            "https://"
        ):
            raise ValueError("HERALD_OIDC_ISSUER must be an https URL in production")
        if not self.oidc_client_id:
            raise ValueError("HERALD_OIDC_CLIENT_ID is required with HERALD_OIDC_ISSUER")
        if not self.oidc_audience:
            raise ValueError("HERALD_OIDC_AUDIENCE is required with HERALD_OIDC_ISSUER")
        if self.oidc_audience == self.oidc_client_id:
            raise ValueError(
                "HERALD_OIDC_AUDIENCE must differ from HERALD_OIDC_CLIENT_ID: ID tokens carry "
                "the client id as their audience and must not pass as access tokens"
            )
        if self.oidc_algorithm is not JwtAlgorithm.RS256:
            raise ValueError("HERALD_OIDC_ALGORITHM must be an asymmetric algorithm (RS256)")
        if "openid" not in self.oidc_scopes.split():
            raise ValueError("HERALD_OIDC_SCOPES must include 'openid'")
        wrong = sorted(
            {role for role in self.oidc_role_map.values()} - {"admin", "manager", "user"}
        )
        if wrong:
            raise ValueError(
                "HERALD_OIDC_ROLE_MAP maps to admin, manager or user only, not: " + ", ".join(wrong)
            )
        return self

    @model_validator(mode="after")
    def _check_keys(self) -> Settings:
        if self.jwt_jwks_url and self.jwt_algorithm is not JwtAlgorithm.RS256:
            raise ValueError("HERALD_JWT_JWKS_URL needs HERALD_JWT_ALGORITHM=RS256")
        if self.jwt_algorithm is JwtAlgorithm.RS256:
            if not self.jwt_public_key and not self.jwt_jwks_url:
                raise ValueError(
                    "HERALD_JWT_PUBLIC_KEY or HERALD_JWT_JWKS_URL is required when "
                    "HERALD_JWT_ALGORITHM=RS256"
                )
        elif self.jwt_secret is None or not self.jwt_secret.get_secret_value():
            raise ValueError("HERALD_JWT_SECRET is required when HERALD_JWT_ALGORITHM=HS256")
        if self.environment is Environment.PRODUCTION:
            for name in (
                "jwt_secret",
                "smtp_password",
                "jwt_private_key",
                "unsubscribe_secret",
                "forget_hash_key",
                "tracking_secret",
                "bounce_secret",
                "postmark_webhook_password",
                "mailgun_webhook_signing_key",
            ):
                value = getattr(self, name)
                if value is None:
                    continue
                secret = value.get_secret_value().lower()
                if any(marker in secret for marker in PLACEHOLDER_MARKERS):
                    raise ValueError(
                        f"HERALD_{name.upper()} holds a placeholder; "
                        "set a real secret in production"
                    )
            if (
                self.jwt_algorithm is JwtAlgorithm.HS256
                and self.jwt_secret is not None
                and len(self.jwt_secret.get_secret_value()) < 32
            ):
                raise ValueError("HERALD_JWT_SECRET must be at least 32 characters in production")
            rs256 = self.jwt_algorithm is JwtAlgorithm.RS256
            if rs256 and self.unsubscribe_secret is None:
                raise ValueError("HERALD_UNSUBSCRIBE_SECRET is required with RS256 in production")
            if rs256 and self.forget_hash_key is None:
                raise ValueError("HERALD_FORGET_HASH_KEY is required with RS256 in production")
            if rs256 and self.email_bounce_domain and self.bounce_secret is None:
                raise ValueError(
                    "HERALD_BOUNCE_SECRET is required with RS256 and a bounce domain in production"
                )
            tracking = self.email_track_opens or self.email_track_clicks
            if tracking and rs256 and not self.tracking_secret:
                raise ValueError(
                    "HERALD_TRACKING_SECRET is required with RS256 and tracking in production"
                )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
