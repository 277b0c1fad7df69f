"""GraphQL over HTTP, per the GraphQL-over-HTTP specification.

A lean Starlette endpoint around ``schema.execute``: Strawberry keeps the GraphQL semantics
(validation, execution, masking, extensions) while this module owns the HTTP contract:

* ``POST`` with ``application/json`` bodies; ``GET`` with URL parameters, for queries only
  (a mutation over ``GET`` is refused with 405);
* responses in ``application/graphql-response+json`` when the client accepts it, else
  ``application/json``; 406 when it accepts neither;
* a request error (parse, validation, variable coercion, an operation that cannot be picked)
  has no ``data`` entry: nothing was executed. With ``application/graphql-response+json`` it
  is a 400; with ``application/json`` a 200, as the spec asks of legacy clients;
* a document with several operations and no ``operationName`` runs nothing (GetOperation).

It replaces Strawberry's router for HTTP because that router spends more time in its request
handling than GraphQL execution takes (measured: see the README), and does not implement the
``application/graphql-response+json`` media type.

A browser's ``GET`` (HTML first in ``Accept``, no ``query``) gets GraphiQL: the build of
``graphiql/`` (scripts/setup.sh, the Dockerfile) in ``backend/graphiql_assets/``, its assets
served from this origin under ``/graphiql/assets/``. Outside production its headers tab starts
with a demo manager token.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from backend.auth import mint_token
from backend.config import Environment, Settings
from backend.content_security import GRAPHIQL_POLICY, page_headers
from backend.schema.context import Context, Services
from backend.schema.root import HeraldSchema

log = logging.getLogger(__name__)

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
_QUERY_ONLY: tuple[OperationType, ...] = (OperationType.QUERY,)
_ALL: tuple[OperationType, ...] = (OperationType.QUERY, OperationType.MUTATION)
GRAPHIQL_BUILD = Path(__file__).resolve().parent / "graphiql_assets"
_CONFIG_MARKER = "__HERALD_GRAPHIQL_CONFIG__"


def _accepted(accept: str | None) -> list[tuple[str, float]]:
    """Media ranges from an Accept header, highest quality first."""
    if not accept:
        return []
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        if not media:
            continue
        quality = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranges.append((media, quality))
    return sorted(ranges, key=lambda r: -r[1])


def negotiate(accept: str | None) -> str | None:
    """The response media type for an Accept header, or ``None`` when none is acceptable."""
    ranges = _accepted(accept)
    if not accept:
        return JSON
    for media, _ in ranges:
        if media == GRAPHQL_RESPONSE:
            return GRAPHQL_RESPONSE
        if media in (JSON, "application/*", "*/*"):
            return JSON
    return None


def wants_html(accept: str | None) -> bool:
    ranges = _accepted(accept)
    return bool(ranges) and ranges[0][0] == "text/html"


def _response(
    body: dict[str, Any], status: int, media: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type=f"{media}; charset=utf-8",
        headers=headers,
    )


def _request_error(
    message: str, status: int, media: str, headers: dict[str, str] | None = None
) -> Response:
    return _response({"errors": [{"message": message}]}, status, media, headers)


def _is_request_error(data: Any, errors: list[GraphQLError] | None) -> bool:
    # Parse, validation and variable-coercion errors happen before execution: no data, no path.
    return data is None and bool(errors) and all(e.path is None for e in errors or [])


class GraphiQLPage:
    """GraphiQL's ``index.html`` from the build, with its settings filled in per request."""

    def __init__(self, settings: Settings, *, build: Path = GRAPHIQL_BUILD) -> None:
        self.settings = settings
        self.headers = page_headers(GRAPHIQL_POLICY)
        index = build / "index.html"
        self._template = index.read_text() if index.is_file() else None
        if self._template is None:
            log.warning("GraphiQL is not built (%s is missing): run scripts/setup.sh", index)
        elif _CONFIG_MARKER not in self._template:
            raise RuntimeError(f"{index} has no {_CONFIG_MARKER} placeholder")

    def _demo_headers(self) -> str | None:
        """A demo manager's token for the headers tab, as `herald dev` prints it; minted per
        page so a long-running development server never offers an expired one."""
        if self.settings.environment is Environment.PRODUCTION:
            return None
        try:
            bearer = mint_token(
                self.settings, sub="demo-manager", roles=["manager"], ttl=timedelta(days=1)
            )
        except ValueError:  # RS256 without a private key: nothing to sign with
            return None
        return orjson.dumps(
            {"Authorization": f"Bearer {bearer}"}, option=orjson.OPT_INDENT_2
        ).decode()

    def render(self) -> Response:
        if self._template is None:
            return HTMLResponse(
                "<!doctype html><title>GraphiQL is not built</title>"
                "<p>GraphiQL is not built: run <code>scripts/setup.sh</code>.</p>",
                status_code=503,
                headers=self.headers,
            )
        config = orjson.dumps({"endpoint": "/graphql", "headers": self._demo_headers()})
        # A JSON data block is not run as script; "<" is escaped so nothing can close it.
        text = config.decode().replace("<", "\\u003c")
        return HTMLResponse(
            self._template.replace(_CONFIG_MARKER, text, 1),
            headers={**self.headers, "Cache-Control": "no-store"},
        )


class GraphQLHTTP:
    """The ``/graphql`` HTTP endpoint."""

    def __init__(
        self, schema: HeraldSchema, *, graphiql: GraphiQLPage | None, max_body_bytes: int
    ) -> None:
        self.schema = schema
        self.graphiql = graphiql
        self.max_body_bytes = max_body_bytes

    async def handle(self, request: Request) -> Response:
        method = request.method
        if method not in ("GET", "POST"):
            return _request_error("GraphQL accepts GET and POST", 405, JSON, {"Allow": "GET, POST"})
        accept = request.headers.get("accept")
        if (
            method == "GET"
            and self.graphiql is not None
            and wants_html(accept)
            and "query" not in request.query_params
        ):
            return self.graphiql.render()
        media = negotiate(accept)
        if media is None:
            return _request_error(
                f"Acceptable response types are {GRAPHQL_RESPONSE} and {JSON}", 406, JSON
            )
        if method == "GET":
            params = self._params_from_query(request, media)
            allowed = _QUERY_ONLY
        else:
            params = await self._params_from_body(request, media)
            allowed = _ALL
        if isinstance(params, Response):
            return params
        query, operation_name, variables, extensions = params
        problem = self.schema.documents.operation_problem(query, operation_name)
        if problem is not None:
            return _request_error(problem, 400, media)
        services: Services = request.app.state.services
        context = Context(services=services, authorization=request.headers.get("authorization"))
        await context.authenticate(api_key=request.headers.get("x-api-key"))
        try:
            result = await self.schema.execute(
                query,
                variable_values=variables,
                context_value=context,
                operation_name=operation_name,
                allowed_operation_types=allowed,
                operation_extensions=extensions,
            )
        except InvalidOperationTypeError as exc:
            if exc.operation_type is OperationType.SUBSCRIPTION:
                return _request_error(
                    "Subscriptions run over WebSocket (graphql-transport-ws)", 400, media
                )
            return _request_error(
                "Mutations are not allowed over GET; use POST", 405, media, {"Allow": "POST"}
            )
        except MissingQueryError:
            return _request_error("The 'query' parameter is required", 400, media)
        except CannotGetOperationTypeError:
            return _request_error(
                "'operationName' does not name an operation in the document", 400, media
            )
        finally:
            await context.close()

        body: dict[str, Any] = {}
        request_error = _is_request_error(result.data, result.errors)
        if result.errors:
            body["errors"] = [e.formatted for e in result.errors]
        if not request_error:  # nothing ran: no data entry, whichever the media type
            body["data"] = result.data
        if result.extensions:
            body["extensions"] = result.extensions
        status = 400 if request_error and media == GRAPHQL_RESPONSE else 200
        return _response(body, status, media)

    def _params_from_query(
        self, request: Request, media: str
    ) -> tuple[str, str | None, dict[str, Any] | None, dict[str, Any] | None] | Response:
        qp = request.query_params
        query = qp.get("query")
        if not query:
            return _request_error("The 'query' parameter is required", 400, media)
        variables = extensions = None
        for name in ("variables", "extensions"):
            raw = qp.get(name)
            if raw is None or raw == "":
                continue
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return _request_error(f"'{name}' must be a JSON-encoded object", 400, media)
            if value is not None and not isinstance(value, dict):
                return _request_error(f"'{name}' must be a JSON-encoded object", 400, media)
            if name == "variables":
                variables = value
            else:
                extensions = value
        return query, qp.get("operationName") or None, variables, extensions

    async def _params_from_body(
        self, request: Request, media: str
    ) -> tuple[str, str | None, dict[str, Any] | None, dict[str, Any] | None] | Response:
        content_type = request.headers.get("content-type")
        if not content_type:
            return _request_error("Send the body as application/json", 415, media)
        mime, _, params = content_type.partition(";")
        if mime.strip().lower() != JSON:
            return _request_error("Send the body as application/json", 415, media)
        charset = params.strip().lower()
        if (
            charset
            and charset.startswith("charset=")
            and charset[8:].strip('"') not in ("utf-8", "utf8")
        ):
            return _request_error("The body must be encoded in UTF-8", 415, media)
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_body_bytes:
            return _request_error("The request body is too large", 413, media)
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > self.max_body_bytes:
                return _request_error("The request body is too large", 413, media)
        if not raw:
            return _request_error("The request body is empty", 400, media)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _request_error("The request body is not valid JSON", 400, media)
        if not isinstance(body, dict):
            return _request_error(
                "The request body must be a JSON object (batching is not supported)", 400, media
            )
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            return _request_error("'query' must be a non-empty string", 400, media)
        operation_name = body.get("operationName")
        if operation_name is not None and not isinstance(operation_name, str):
            return _request_error("'operationName' must be a string", 400, media)
        variables = body.get("variables")
        if variables is not None and not isinstance(variables, dict):
            return _request_error("'variables' must be an object", 400, media)
        extensions = body.get("extensions")
        if extensions is not None and not isinstance(extensions, dict):
            return _request_error("'extensions' must be an object", 400, media)
        return query, operation_name, variables, extensions
