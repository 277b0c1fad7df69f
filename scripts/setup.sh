#!/usr/bin/env bash
# Prepares this checkout: the virtual environment in .venv (locked dependencies, the newest of
# Python 3.13, 3.12 and 3.11 that runs here, or HERALD_PYTHON), and the local PostgreSQL, Redis
# and RabbitMQ, started or installed when missing.
#   scripts/setup.sh        what `make dev` needs (GraphiQL's build included: Node.js and npm)
#   scripts/setup.sh test  plus what the test suite needs (Node.js for the HTTP audit suite)
set -euo pipefail
cd "$(dirname "$0")/.."

PURPOSE="${1:-dev}"
UV_VERSION="0.13.9"
# Newest first: the versions pyproject.toml's requires-python allows.
PYTHON_CANDIDATES=(python3.13 python3.12 python3.11)

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\033[31merror: %s\033[0m\n' "$*" >&2; exit 1; }

# The interpreter's own path if it runs and is a supported version. Being on PATH is not
# enough: a pyenv shim for a version the current pyenv selection leaves out is on PATH and fails.
supported_python() {
  "$1" -c 'import sys; assert (3, 11) <= sys.version_info[:2] <= (3, 13); print(sys.executable)' \
    2>/dev/null
}

if [ -n "${HERALD_PYTHON:-}" ]; then
  PYTHON="$(supported_python "$HERALD_PYTHON")" \
    || die "HERALD_PYTHON=$HERALD_PYTHON does not run as Python 3.11, 3.12 or 3.13"
  CHOSEN_BY="HERALD_PYTHON"
else
  PYTHON=""
  for candidate in "${PYTHON_CANDIDATES[@]}"; do
    if PYTHON="$(supported_python "$candidate")"; then
      CHOSEN_BY="$candidate, the newest that runs here"
      break
    fi
  done
  [ -n "$PYTHON" ] || die "none of ${PYTHON_CANDIDATES[*]} runs here; install Python 3.13, 3.12 or 3.11 (or set HERALD_PYTHON)"
fi
say "using Python $("$PYTHON" -c 'import platform; print(platform.python_version())') at $PYTHON ($CHOSEN_BY)"

# --- Python environment -----------------------------------------------------------------------
if [ ! -x .tools/bin/uv ] || [ "$(.tools/bin/uv --version | awk '{print $2}')" != "$UV_VERSION" ]; then
  say "installing uv $UV_VERSION into .tools/"
  "$PYTHON" -m venv .tools
  .tools/bin/pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
if [ -x .venv/bin/python ] \
  && [ "$(.venv/bin/python -c 'import platform; print(platform.python_version())' 2>/dev/null)" \
    != "$("$PYTHON" -c 'import platform; print(platform.python_version())')" ]; then
  # uv sync replaces an environment built on another interpreter; say so, it takes a while.
  say ".venv was built with another Python; uv rebuilds it"
fi
say "syncing .venv from uv.lock"
UV_PROJECT_ENVIRONMENT=.venv UV_PYTHON_DOWNLOADS=never \
  .tools/bin/uv sync --frozen --compile-bytecode --python "$PYTHON" --quiet

# --- Local services ---------------------------------------------------------------------------
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # port seconds
  local i
  for ((i = 0; i < $2 * 2; i++)); do answers "$1" && return 0; sleep 0.5; done
  return 1
}

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] || return 1
  if [ "$APT_UPDATED" = 0 ]; then apt-get update -qq >/dev/null && APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

start_postgresql() {
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then apt_install postgresql || return 1; fi
  local version
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)"
  [ -n "$version" ] || return 1
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
  # Tests and development connect as postgres over TCP without a password.
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if [ -w "$hba" ] && ! grep -q "herald: trust local TCP" "$hba"; then
    sed -i '1i # herald: trust local TCP\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload >/dev/null 2>&1 || true
  fi
}

start_redis() {
  if ! command -v redis-server >/dev/null 2>&1; then apt_install redis-server || return 1; fi
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/herald.log >/dev/null
}

start_rabbitmq() {
  if ! command -v rabbitmq-server >/dev/null 2>&1; then apt_install rabbitmq-server || return 1; fi
  rabbitmq-server -detached >/dev/null 2>&1
}

ensure_service() {  # name port starter seconds
  if answers "$2"; then
    echo "    $1 answers on 127.0.0.1:$2"
    return
  fi
  say "$1 does not answer on 127.0.0.1:$2; starting it"
  "$3" || die "$1 is not running on 127.0.0.1:$2 and could not be installed or started here"
  wait_for "$2" "$4" || die "$1 was started but does not answer on 127.0.0.1:$2 after $4 s"
  echo "    $1 answers on 127.0.0.1:$2"
}

say "checking local services"
ensure_service PostgreSQL 5432 start_postgresql 30
ensure_service Redis 6379 start_redis 15
ensure_service RabbitMQ 5672 start_rabbitmq 90

# A RabbitMQ virtual host of their own keeps tests and benchmarks apart from a running
# `herald dev` (their workers would otherwise take each other's messages).
ensure_vhost() {
  if ! command -v rabbitmqctl >/dev/null 2>&1; then
    die "rabbitmqctl is needed to create the RabbitMQ virtual host '$1'"
  fi
  if ! rabbitmqctl -q list_vhosts 2>/dev/null | grep -qx "$1"; then
    rabbitmqctl -q add_vhost "$1" >/dev/null
  fi
  rabbitmqctl -q set_permissions -p "$1" guest ".*" ".*" ".*" >/dev/null
}

if [ "$PURPOSE" = "bench" ]; then
  command -v wrk >/dev/null 2>&1 || apt_install wrk || die "wrk is needed for the benchmarks"
  # Postfix's smtp-sink: an SMTP sink far faster than any Python client (the email baseline).
  # "No configuration" installs the programs without configuring or starting a mail server.
  if [ ! -x /usr/lib/postfix/sbin/smtp-sink ] && [ ! -x /usr/sbin/smtp-sink ]; then
    if command -v debconf-set-selections >/dev/null 2>&1; then
      echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    fi
    apt_install postfix || die "Postfix's smtp-sink is needed for the campaign benchmark"
  fi
  ensure_vhost herald_bench
fi

# --- GraphiQL ---------------------------------------------------------------------------------
# The API serves GraphiQL from its own origin, built from graphiql/ into backend/graphiql_assets/
# (not committed). npm ci when the lock is newer than the installed modules; the build when a
# source is newer than the output. Nothing to do, nothing run: a check of a few file dates.
graphiql_stale() {
  local output=backend/graphiql_assets/index.html
  [ ! -f "$output" ] || [ -n "$(find graphiql/package.json graphiql/package-lock.json \
    graphiql/index.html graphiql/vite.config.js graphiql/src -newer "$output" -print -quit)" ]
}
if graphiql_stale || [ ! -f graphiql/node_modules/.package-lock.json ]; then
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "installing Node.js (to build GraphiQL)"
    apt_install nodejs npm || die "Node.js 20.19+ and npm are needed to build GraphiQL; install them"
  fi
  node -e 'const [a, b] = process.versions.node.split(".").map(Number);
    process.exit(a > 22 || (a === 22 && b >= 12) || (a === 20 && b >= 19) ? 0 : 1)' \
    || die "GraphiQL's build (vite) needs Node.js 20.19+ or 22.12+; this is $(node --version)"
  if [ ! -f graphiql/node_modules/.package-lock.json ] \
    || [ graphiql/package-lock.json -nt graphiql/node_modules/.package-lock.json ]; then
    say "installing GraphiQL's build dependencies (npm ci in graphiql/)"
    (cd graphiql && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  if graphiql_stale; then
    say "building GraphiQL (graphiql/ -> backend/graphiql_assets/)"
    (cd graphiql && npm run --silent build -- --logLevel=warn >/dev/null)
  fi
fi
# --- end GraphiQL -----------------------------------------------------------------------------
# --- <herald-inbox> ---------------------------------------------------------------------------
# The inbox Web Component, built from clients/inbox/ (esbuild, its package-lock.json) into
# backend/sdk_assets/herald-inbox.js (not committed), which the API serves at
# /sdk/herald-inbox.js. The same staleness checks as GraphiQL's; the build prints its size and
# fails over 40 kB gzipped.
inbox_stale() {
  local output=backend/sdk_assets/herald-inbox.js
  [ ! -f "$output" ] || [ -n "$(find clients/inbox/package.json clients/inbox/package-lock.json \
    clients/inbox/build.mjs clients/inbox/tsconfig.json clients/inbox/src -newer "$output" -print -quit)" ]
}
if inbox_stale || [ ! -f clients/inbox/node_modules/.package-lock.json ]; then
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "installing Node.js (to build <herald-inbox>)"
    apt_install nodejs npm || die "Node.js 18+ and npm are needed to build <herald-inbox>; install them"
  fi
  if [ ! -f clients/inbox/node_modules/.package-lock.json ] \
    || [ clients/inbox/package-lock.json -nt clients/inbox/node_modules/.package-lock.json ]; then
    say "installing <herald-inbox>'s build dependencies (npm ci in clients/inbox/)"
    (cd clients/inbox && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  if inbox_stale; then
    say "building <herald-inbox> (clients/inbox/ -> backend/sdk_assets/)"
    (cd clients/inbox && npm run --silent build)
  fi
fi
# --- end <herald-inbox> -----------------------------------------------------------------------
# --- Admin page libraries ------------------------------------------------------------------------
# The overview's charts (uPlot) and the single sign-on client (oidc-client-ts, bundled by
# esbuild), at the versions admin_vendor/package-lock.json pins, written into
# admin_frontend/vendor/ (not committed), which the page loads from its own origin.
admin_vendor_stale() {
  local output
  for output in admin_frontend/vendor/uplot/uPlot.esm.js admin_frontend/vendor/oidc-client-ts/oidc-client-ts.js; do
    if [ ! -f "$output" ] || [ -n "$(find admin_vendor/package.json admin_vendor/package-lock.json \
      admin_vendor/oidc.js -newer "$output" -print -quit)" ]; then
      return 0
    fi
  done
  return 1
}
if admin_vendor_stale; then
  if ! command -v npm >/dev/null 2>&1; then
    say "installing Node.js (for the admin page's libraries)"
    apt_install nodejs npm || die "npm is needed for the admin page's libraries; install Node.js"
  fi
  say "installing the admin page's libraries into admin_frontend/vendor/ (npm ci, esbuild)"
  (cd admin_vendor && npm ci --no-audit --no-fund --loglevel=error >/dev/null && npm run --silent vendor)
fi

# The typed clients' code generator (`make clients`; a test diffs the committed client against
# a fresh run). Its own environment: it pins an older ruff than the project's.
CODEGEN_REQUIREMENTS=clients/python/codegen/requirements.txt
if [ ! -x .tools/codegen/bin/ariadne-codegen ] || [ "$CODEGEN_REQUIREMENTS" -nt .tools/codegen/installed ]; then
  say "installing the client code generator into .tools/codegen/"
  .tools/bin/uv venv --quiet --allow-existing --python "$PYTHON" .tools/codegen
  .tools/bin/uv pip install --quiet --python .tools/codegen/bin/python -r "$CODEGEN_REQUIREMENTS"
  touch .tools/codegen/installed
fi

# --- Test tooling -----------------------------------------------------------------------------
if [ "$PURPOSE" = "test" ]; then
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "installing Node.js (for the GraphQL-over-HTTP audit suite)"
    apt_install nodejs npm || die "Node.js and npm are needed for the tests; install them"
  fi
  if [ ! -x /usr/bin/chromium ]; then
    # The admin page's tests drive Debian's Chromium with Playwright; no browser is downloaded.
    say "installing Chromium (for the admin page tests)"
    apt_install chromium || die "Chromium (/usr/bin/chromium) is needed for the admin page tests; install Debian's chromium package"
  fi
  if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    say "installing nginx (the reverse-proxy tests run the repository's nginx config)"
    apt_install nginx || die "nginx is needed for the deployment tests; install Debian's nginx package"
  fi
  if ! command -v docker-compose >/dev/null 2>&1; then
    # Only to validate docker-compose.yml (`docker-compose config`); no Docker engine needed.
    say "installing docker-compose (to validate docker-compose.yml)"
    apt_install --no-install-recommends docker-compose \
      || die "docker-compose is needed for the deployment tests; install Debian's docker-compose package"
  fi
  ensure_vhost herald_test
  if [ ! -d tests/http_audit/node_modules/graphql-http ]; then
    say "installing the GraphQL-over-HTTP audit suite (npm ci)"
    (cd tests/http_audit && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  if [ ! -f clients/typescript/node_modules/.package-lock.json ] \
    || [ clients/typescript/package-lock.json -nt clients/typescript/node_modules/.package-lock.json ]; then
    say "installing the TypeScript client's code generator and compiler (npm ci in clients/typescript/)"
    (cd clients/typescript && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  if [ ! -f tests/oidc_provider/node_modules/.package-lock.json ] \
    || [ tests/oidc_provider/package-lock.json -nt tests/oidc_provider/node_modules/.package-lock.json ]; then
    say "installing the OpenID provider for the single sign-on tests (npm ci in tests/oidc_provider/)"
    (cd tests/oidc_provider && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  if [ ! -d tests/standard_webhooks/node_modules/standardwebhooks ]; then
    say "installing the Standard Webhooks verifier for the webhook tests (npm ci)"
    (cd tests/standard_webhooks && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
fi
say "ready"
