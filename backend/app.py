"""``create_app()``: the FastAPI application and its lifespan (engine, broker, Redis, GraphQL)."""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from redis.asyncio import Redis
from sqlalchemy import text
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET

from backend.admin_page import mount_admin
from backend.auth import TokenVerifier
from backend.broker import Broker
from backend.config import Settings, get_settings
from backend.content_security import (
    GRAPHIQL_POLICY,
    SDK_POLICY,
    WithHeaders,
    page_headers,
)
from backend.db.history.factory import create_history_store
from backend.db.session import create_engine, create_sessionmaker
from backend.demo_page import mount_demo
from backend.errors import HeraldError
from backend.frameworks.strawberry_internals import graphql_core_schema
from backend.frameworks.uvicorn_sockets import release_uvicorn_handshake
from backend.gc_policy import FrozenHeap
from backend.graphql_http import GRAPHIQL_BUILD, GraphiQLPage, GraphQLHTTP
from backend.live_socket import LiveSocketHandler, NotificationPlans, encode_json
from backend.observability.logs import configure_logging
from backend.observability.metrics import metrics_endpoint
from backend.observability.tracing import configure_tracing, instrument_app
from backend.preference_page import router as preference_router
from backend.provider_events import router as provider_events_router
from backend.realtime import LiveHub, fault_channel
from backend.schema.context import Clients, Context, Services
from backend.schema.root import HeraldSchema, build_schema
from backend.services import rate_limits, rendering
from backend.services.api_keys import ApiKeyVerifier
from backend.services.campaigns import BrokerRunPublisher
from backend.services.deliveries import BrokerDeliveryQueue
from backend.services.events import Ingestion
from backend.services.live import RedisLivePublisher, SequenceReader
from backend.services.webhooks import BrokerWebhookQueue, WebhookNotifier
from backend.tracking_links import router as tracking_router
from backend.workers.celery_app import create_celery
from backend.workers.schedules import RedBeatTrigger

log = logging.getLogger(__name__)
WS_RATE_LIMITED = 4429
# <herald-inbox>, built from clients/inbox/ (scripts/setup.sh, the Dockerfile): not committed.
SDK_BUILD = Path(__file__).resolve().parent / "sdk_assets"


def _release_handshake(socket: Any) -> None:
    """Let go of the handshake's request and response (their headers are a few KB per socket)
    once the connection is accepted and its caller known: uvicorn keeps both for the life of
    the connection, and nothing reads them after the accept."""
    if not isinstance(socket, WebSocket):
        return
    release_uvicorn_handshake(socket)
    headers = socket.scope.get("headers")
    if isinstance(headers, list):
        headers.clear()


class HeraldAPI(FastAPI):
    """FastAPI, with ``/graphql`` served straight from the ASGI entry point.

    The GraphQL WebSocket: each idle subscription would otherwise keep the middleware stack's
    and the router's frames (and an AsyncExitStack) alive for as long as the socket is open.
    ``POST /graphql``, every event a service sends: the stack's layers (error and exception
    middleware, body limit, router, an AsyncExitStack per request) cost more than the rest of
    a ``sendEvent`` but its GraphQL and its publish. It gets the same CORS handling as the
    stack's, and an unexpected error answers 500 as the stack's would. With tracing on, the
    instrumented stack serves it (every request gets its span).
    """

    websocket_endpoint: Any = None
    graphql_post: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("path") == "/graphql":
            kind = scope["type"]
            if kind == "http" and scope["method"] == "POST" and self.graphql_post is not None:
                scope["app"] = self
                await self.graphql_post(scope, receive, send)
                return
            if kind == "websocket" and self.websocket_endpoint is not None:
                scope["app"] = self
                await self.websocket_endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _graphql_post(graphql_http: GraphQLHTTP, cors: dict[str, Any]) -> Any:
    """``POST /graphql`` as a bare ASGI app behind the same CORS middleware (HeraldAPI)."""

    async def endpoint(scope: Any, receive: Any, send: Any) -> None:
        try:
            response = await graphql_http.handle(Request(scope, receive))
        except Exception:
            log.exception("POST /graphql failed")
            response = PlainTextResponse("Internal Server Error", status_code=500)
        await response(scope, receive, send)

    return CORSMiddleware(endpoint, **cors)


class GraphQLWebSocket(GraphQL[Context, None]):
    """Strawberry's ASGI view, used for ``graphql-transport-ws`` only, reached straight from
    ``HeraldAPI``: thousands of idle subscriptions sit on one process.

    Browsers cannot set headers on a WebSocket, so the token comes in ``connection_init``
    (``{"authorization": "Bearer <jwt or hk_ API key>"}``, or ``{"apiKey": "hk_..."}``); a
    bad token closes the socket with 4403, and so does the revocation of the API key it
    signed in with.
    ``notifications`` subscriptions take the fast path of backend/live_socket.py.
    """

    graphql_transport_ws_handler_class = LiveSocketHandler

    def __init__(self, schema: HeraldSchema, **options: Any) -> None:
        super().__init__(schema, **options)
        self.plans = NotificationPlans(graphql_core_schema(schema), schema.documents)

    def encode_json(self, data: object) -> str:
        return encode_json(data)

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        # Per-IP connection rate, checked before the origin check or any other work: over the
        # limit the socket is accepted only to be closed with 4429 (a close code a browser sees;
        # refusing the handshake would show as a bare 403).
        if isinstance(request, WebSocket) and request.client is not None:
            services: Services = request.app.state.services
            decision = await rate_limits.allow_ws_connect(
                services.clients.redis, settings=services.settings, address=request.client.host
            )
            if not decision.allowed:
                wait = math.ceil(decision.retry_after_seconds)
                await request.accept(subprotocol=await self.pick_websocket_subprotocol(request))
                await request.close(
                    code=WS_RATE_LIMITED, reason=f"Too many connections; retry in {wait} s"
                )
                return request
        return await super().run(request, context=context, root_value=root_value)

    async def on_ws_connect(self, context: Context) -> dict[str, Any] | None:
        params = context.connection_params or {}
        context.authorization = params.get("authorization") or params.get("Authorization")
        api_key = params.get("apiKey") or params.get("x-api-key")
        await context.authenticate(api_key=api_key if isinstance(api_key, str) else None)
        try:
            principal = context.principal()
        except HeraldError as exc:
            raise ConnectionRejectionError({"code": exc.code, "message": exc.message}) from exc
        if principal.key_name is not None:
            # Signed in with an API key: its revocation closes the socket (4403).
            prefix = principal.user_id.removeprefix("api-key:")
            context.services.clients.api_keys.watch(prefix, context.request)
        # The principal is kept; the token and the parameters are not needed again, and an
        # idle socket should not hold them, nor the handshake.
        context.authorization = context.connection_params = None
        _release_handshake(context.request)
        return {"userId": principal.user_id}

    async def get_context(self, request: Any, response: Any) -> Context:
        context = Context(services=request.app.state.services)
        context.request = request
        context.response = response
        return context


async def _check(name: str, probe: Any) -> tuple[str, str | None]:
    try:
        await asyncio.wait_for(probe, 2.0)
    except Exception as exc:
        return name, f"{type(exc).__name__}: {exc}"[:200]
    return name, None


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    """Build the API. ``services`` lets tests supply their own session factory."""
    settings = settings or get_settings()
    configure_logging(settings)
    schema = build_schema(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_engine = services is None
        if services is None:
            engine = create_engine(settings)
            app.state.services = Services(
                settings=settings,
                verifier=TokenVerifier(settings),
                sessionmaker=create_sessionmaker(engine),
                engine=engine,
            )
        else:
            app.state.services = services
            engine = services.engine
        state: Services = app.state.services
        redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
        broker = Broker.from_settings(settings)
        await broker.start()
        history = create_history_store(settings, engine)
        try:
            await history.start()
        except Exception as exc:
            log.warning("history store not reachable at start: %s", exc)
        live_hub = LiveHub(
            settings.redis_url,
            queue_size=settings.live_queue_size,
            max_per_user=settings.ws_max_subscriptions_per_user,
            fault_channel=fault_channel(os.getpid()) if settings.live_hub_fault_injection else None,
        )
        await live_hub.start()
        api_keys = ApiKeyVerifier(
            lambda: state.sessionmaker(),
            redis_url=settings.redis_url,
            cache_seconds=settings.api_key_cache_seconds,
            touch_seconds=settings.api_key_touch_seconds,
        )
        await api_keys.start()
        state.opened = Clients(
            api_keys=api_keys,
            live_hub=live_hub,
            live=RedisLivePublisher(redis),
            inbox_sequences=SequenceReader(),
            redis=redis,
            broker=broker,
            history=history,
            queue=BrokerDeliveryQueue(broker),
            ingestion=Ingestion(settings=settings, broker=broker, redis=redis),
            campaign_trigger=RedBeatTrigger(create_celery(settings)),
            run_publisher=BrokerRunPublisher(broker),
            webhooks=WebhookNotifier(
                sessionmaker=state.sessionmaker,
                queue=BrokerWebhookQueue(broker),
                cache_seconds=settings.webhook_cache_seconds,
            ),
        )
        heap = None
        if own_engine and settings.gc_full_collection_seconds > 0:
            heap = FrozenHeap(settings.gc_full_collection_seconds)
            heap.start()
        try:
            yield
        finally:
            if heap is not None:
                await heap.close()
            await api_keys.close()
            await live_hub.close()
            await broker.close()
            await history.close()
            await redis.aclose()
            state.opened = None
            rendering.close_render_pool()
            if own_engine:
                await engine.dispose()

    app = HeraldAPI(
        title="Herald",
        lifespan=lifespan,
        docs_url="/docs" if settings.is_development else None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.is_development else None,
    )
    # Pages on the origins the WebSocket already admits (HERALD_ALLOWED_ORIGINS) may call the
    # HTTP API too: an app embedding <herald-inbox> usually lives on another origin. Tokens go
    # in the Authorization header, never in cookies, so no credentials are allowed.
    cors: dict[str, Any] = {
        "allow_origins": settings.allowed_origins,
        "allow_methods": ["GET", "POST"],
        "allow_headers": ["Authorization", "Content-Type", "Accept", "X-Api-Key"],
        "max_age": 600,
    }
    app.add_middleware(CORSMiddleware, **cors)
    traced = configure_tracing(settings, "herald-api")
    if traced:
        instrument_app(app)
    app.add_route("/metrics", metrics_endpoint(settings), include_in_schema=False)

    app.state.schema = schema  # the one schema both endpoints run (bench/operations.py)
    graphiql = GraphiQLPage(settings) if settings.graphiql_enabled else None
    graphql_http = GraphQLHTTP(schema, graphiql=graphiql, max_body_bytes=settings.max_body_bytes)
    if not traced:
        app.graphql_post = _graphql_post(graphql_http, cors)
    app.add_route(
        "/graphql",
        graphql_http.handle,
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        include_in_schema=False,
    )
    ws_view = GraphQLWebSocket(
        schema,
        graphql_ide=None,
        allow_queries_via_get=False,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        connection_init_wait_timeout=timedelta(seconds=settings.ws_connection_init_timeout_seconds),
        max_subscriptions_per_connection=settings.ws_max_subscriptions,
        allowed_origins=settings.allowed_origins,
    )
    app.websocket_endpoint = ws_view
    # The hosted preference page and one-click unsubscribe, reached from email links.
    app.include_router(preference_router)
    # Email open and click tracking: the pixel and the signed redirects.
    app.include_router(tracking_router)
    # Bounces and complaints that email providers report (signed; backend/provider_events.py).
    app.include_router(provider_events_router)

    if graphiql is not None and (GRAPHIQL_BUILD / "assets").is_dir():
        assets = StaticFiles(directory=GRAPHIQL_BUILD / "assets")
        app.mount("/graphiql/assets", WithHeaders(assets, page_headers(GRAPHIQL_POLICY)))
    if SDK_BUILD.is_dir():
        # <herald-inbox> for any page, one script tag: served in every environment.
        sdk = StaticFiles(directory=SDK_BUILD)
        app.mount("/sdk", WithHeaders(sdk, page_headers(SDK_POLICY)), name="sdk")
    if settings.serve_demo_enabled:
        mount_demo(app, settings)
    mount_admin(app, settings)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """PostgreSQL, Redis and RabbitMQ are reachable and the live hub holds its Redis
        subscription; 503 names the ones that are not."""
        state: Services = app.state.services

        async def postgres() -> None:
            async with state.sessionmaker() as session:
                await session.execute(text("SELECT 1"))

        async def rabbitmq() -> None:
            if not state.clients.broker.is_ready():
                raise ConnectionError("not connected")

        async def live_hub() -> None:
            # A moment's grace: the hub connects just after start and reconnects within
            # 0.2 s of a blip; longer than that, live messages reach nobody on this process.
            try:
                await state.clients.live_hub.wait_ready(1.0)
            except TimeoutError:
                raise ConnectionError("no Redis subscription") from None

        results = await asyncio.gather(
            _check("postgresql", postgres()),
            _check("redis", state.clients.redis.ping()),
            _check("rabbitmq", rabbitmq()),
            _check("live_hub", live_hub()),
        )
        failing = {name: error for name, error in results if error}
        checks = {name: ("down" if error else "ok") for name, error in results}
        if failing:
            # The reasons go to the log, not to whoever asks: they can name hosts and ports.
            log.warning("not ready: %s", failing)
            return JSONResponse(
                {"status": "unavailable", "checks": checks, "failing": sorted(failing)},
                status_code=503,
            )
        return JSONResponse({"status": "ok", "checks": checks})

    return app
