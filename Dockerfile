# syntax=docker/dockerfile:1
# One image for every Herald process (api, worker, beat, migrate, the dev stand-ins):
#   docker build -t herald . && docker run --rm herald --help
# The build stage installs the locked dependencies with uv (the same uv.lock as `make dev`);
# the runtime stage carries only the virtual environment and runs as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- GraphiQL ---------------------------------------------------------------------------------
# GraphiQL is built from graphiql/ (its package-lock.json) with Node, as scripts/setup.sh does,
# into backend/graphiql_assets/; the build stage puts it in the package the API serves it from.
FROM node:20-bookworm-slim AS graphiql
WORKDIR /src/graphiql
COPY graphiql/package.json graphiql/package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY graphiql/index.html graphiql/vite.config.js ./
COPY graphiql/src ./src
RUN npm run build
# --- end GraphiQL -----------------------------------------------------------------------------

# --- <herald-inbox> ---------------------------------------------------------------------------
# The inbox Web Component, built from clients/inbox/ (its package-lock.json) as
# scripts/setup.sh does, into backend/sdk_assets/, which the API serves at /sdk/.
FROM node:20-bookworm-slim AS inbox
WORKDIR /src/clients/inbox
COPY clients/inbox/package.json clients/inbox/package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY clients/inbox/build.mjs clients/inbox/tsconfig.json ./
COPY clients/inbox/src ./src
RUN npm run build
# --- end <herald-inbox> -----------------------------------------------------------------------

FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# uv from PyPI, pinned like scripts/setup.sh, so the image needs no other registry.
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /src
# Dependencies first: this layer is rebuilt only when the lock changes, not on every edit.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
COPY backend ./backend
COPY --from=graphiql /src/backend/graphiql_assets ./backend/graphiql_assets
COPY --from=inbox /src/backend/sdk_assets ./backend/sdk_assets
# The project itself as a wheel (not editable): the runtime stage needs no source tree.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# --- The admin page's libraries (uPlot, oidc-client-ts) -----------------------------------------
# Not part of the image: nginx serves admin_frontend/. Export it next to the page with
#   docker build --target admin-vendor --output admin_frontend/vendor .
# (scripts/setup.sh does the same with the local npm, from the same lock file.)
FROM node:20-bookworm-slim AS admin-vendor-build
WORKDIR /admin_vendor
COPY admin_vendor/package.json admin_vendor/package-lock.json admin_vendor/oidc.js ./
RUN npm ci --no-audit --no-fund && VENDOR_DIR=/vendor npm run vendor

FROM scratch AS admin-vendor
COPY --from=admin-vendor-build /vendor /
# --------------------------------------------------------------------------------------------------

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HERALD_ENVIRONMENT=production
RUN groupadd --system --gid 10001 herald \
    && useradd --system --uid 10001 --gid herald --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin herald
# Owned by root and read-only to the service user: the code cannot be rewritten at run time.
COPY --from=build /app/.venv /app/.venv
WORKDIR /app
USER herald:herald
EXPOSE 8000 9100
ENTRYPOINT ["herald"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
