# Shared set-up for scripts/dev, scripts/test and .ci/run: a virtualenv that matches pyproject.toml, and the
# services (Redis, PostgreSQL) installed from Debian's packages and started when they are missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
export URLLIB3_NO_OVERRIDE=1 PIP_NO_BINARY=urllib3-future PIP_DISABLE_PIP_VERSION_CHECK=1

say() { printf '[synchub] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root to run: $*"; return 1; fi
}

apt_install() {
  say "installing $* from Debian's packages"
  if [ -z "${SYNCHUB_APT_UPDATED:-}" ]; then as_root apt-get update -qq; export SYNCHUB_APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_venv() {
  local python="${PYTHON:-python3}"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { say "Python 3.11+ is required"; exit 1; }
  if [ ! -x "$VENV/bin/python" ]; then
    "$python" -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; "$python" -m venv "$VENV"; }
  fi
  local stamp="$VENV/.synchub-installed" want
  want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing synchub and its dependencies into .venv"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -e "$ROOT[dev]"
    echo "$want" > "$stamp"
  fi
}

# The tests load a connector with resources the way a third-party package is loaded, through the
# synchub.connectors entry point: install it (editable, from tests/) into the venv when it is missing.
ensure_test_connector() {
  "$VENV/bin/python" -c "import importlib.metadata as m; m.distribution('synchub-loopback-books')" 2>/dev/null && return 0
  say "installing the tests' loopback_books connector into .venv"
  "$VENV/bin/pip" install -q -e "$ROOT/tests/loopback_books"
}

redis_answers() { "$VENV/bin/python" -c "import redis,sys; redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()" "$1" 2>/dev/null; }

ensure_redis_server_binary() {
  command -v redis-server >/dev/null || apt_install redis-server
}

# The browser test (tests/test_docs_browser.py) drives Debian's chromium through Playwright's own driver:
# never `playwright install`, which downloads a browser build.
ensure_chromium() {
  [ -x /usr/bin/chromium ] || apt_install chromium
}

ensure_redis() {
  local url="${SYNCHUB_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
  redis_answers "$url" && return 0
  ensure_redis_server_binary
  say "starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 50); do redis_answers "$url" && return 0; sleep 0.1; done
  say "Redis did not answer at $url"; exit 1
}

pg_ready() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; }

ensure_postgres() {
  pg_ready && return 0
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  say "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start || true
  for _ in $(seq 100); do pg_ready && return 0; sleep 0.2; done
  say "PostgreSQL does not answer on 127.0.0.1:5432"; exit 1
}

# The tests need a role that may create databases. Unless SYNCHUB_TEST_PG_ADMIN_URL names one already, a
# password role synchub_test is made through the local postgres superuser (peer auth on the socket), so the
# tests work whether TCP auth is trust or a password.
ensure_test_role() {
  if [ -n "${SYNCHUB_TEST_PG_ADMIN_URL:-}" ]; then return 0; fi
  local sql="DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'synchub_test') THEN
    CREATE ROLE synchub_test LOGIN CREATEDB PASSWORD 'synchub_test'; END IF; END\$\$;"
  if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
    runuser -u postgres -- psql -q -d postgres -c "$sql" >/dev/null
  else
    sudo -u postgres psql -q -d postgres -c "$sql" >/dev/null
  fi
  export SYNCHUB_TEST_PG_ADMIN_URL="postgresql://synchub_test:synchub_test@127.0.0.1:5432/postgres"
}
