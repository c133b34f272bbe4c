# shellcheck shell=bash
# Helpers shared by scripts/test, scripts/demo and .ci/run. Source it:
#   . "$(dirname "$0")/lib.sh"
#
# Every helper either succeeds or stops the script with a message that says
# what to do next. Nothing here listens on anything but loopback.
#
# Environment (all optional):
#   LETHE_REDIS_URL        Redis that ensure_redis makes reachable
#                          (default redis://127.0.0.1:6379/0)
#   LETHE_PG_PORT          port of the local PostgreSQL (default 5432)
#   LETHE_NATS_PORT        client port of our own nats-server (default 4333)
#   LETHE_NATS_HTTP_PORT   its monitoring port (default 8333)
#   LETHE_NATS_SYNC        its JetStream sync_interval (default 2m, the
#                          server's own default; "always" fsyncs every write)
#   LETHE_NATS_AUTH_DIR    a directory from lethe-nats-auth keys: start_nats
#                          enforces its per-service nkeys and permissions

LETHE_NATS_VERSION=v2.15.3
LETHE_GO_MIN_MINOR=26 # Go 1.26 or newer

# lethe_root prints the repository root.
lethe_root() {
  (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
}
LETHE_ROOT=$(lethe_root)
LETHE_PROG=${LETHE_PROG:-$(basename "$0")}

say() { printf '%s: %s\n' "$LETHE_PROG" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$LETHE_PROG" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$LETHE_PROG" "$1" >&2
  shift
  local line
  for line in "$@"; do printf '%s:   %s\n' "$LETHE_PROG" "$line" >&2; done
  exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# as_root runs a command as root: directly when we are root, else via sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif have sudo; then
    sudo "$@"
  else
    die "this step needs root: $*" "run it as root, or install sudo"
  fi
}

# apt_install installs Debian packages, running apt-get update once first.
_lethe_apt_updated=
apt_install() {
  have apt-get || die "need to install $* but this machine has no apt-get" \
    "install $* with your package manager and run this again"
  if [ -z "$_lethe_apt_updated" ]; then
    say "apt-get update"
    as_root apt-get update -qq ||
      warn "apt-get update failed; trying to install from the package cache"
    _lethe_apt_updated=1
  fi
  say "installing $* (apt-get)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "$@" >/dev/null ||
    die "apt-get install $* failed" "see the apt-get messages above"
}

# ensure_cmd CMD PACKAGE installs PACKAGE when CMD is missing.
ensure_cmd() {
  have "$1" || apt_install "$2"
  have "$1" || die "$1 is still missing after installing $2"
}

# tcp_open HOST PORT succeeds when something accepts connections there.
tcp_open() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

is_loopback() {
  case "$1" in
    127.* | localhost | ::1 | '[::1]') return 0 ;;
    *) return 1 ;;
  esac
}

# wait_for SECONDS CMD... retries CMD every 0.2 s until it succeeds.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# wait_http URL TIMEOUT [PID] waits until URL answers 2xx. With PID, gives up
# early when that process has exited.
wait_http() {
  local url=$1 timeout=${2:-30} pid=${3:-}
  local deadline=$((SECONDS + timeout))
  ensure_cmd curl curl
  while :; do
    if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then
      return 0
    fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.25
  done
}

# pid_alive PIDFILE [PATTERN] prints the pid and succeeds when the process in
# PIDFILE runs and (with PATTERN) its command line contains PATTERN, so that
# a pid reused by an unrelated process is never taken for ours.
pid_alive() {
  local file=$1 pattern=${2:-} pid
  [ -s "$file" ] || return 1
  pid=$(tr -dc '0-9' <"$file")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  if [ -n "$pattern" ] && [ -r "/proc/$pid/cmdline" ]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$pattern" || return 1
  fi
  echo "$pid"
}

# stop_pidfile PIDFILE [PATTERN] stops the process in PIDFILE (TERM, then
# KILL after 15 s) and removes the file. See pid_alive for PATTERN.
stop_pidfile() {
  local file=$1 pattern=${2:-} pid i
  if pid=$(pid_alive "$file" "$pattern"); then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 75; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      warn "pid $pid ($(basename "$file" .pid)) ignored SIGTERM for 15 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$file"
}

# ---------------------------------------------------------------- Go

ensure_go() {
  if ! have go && [ -x /usr/local/go/bin/go ]; then
    PATH="/usr/local/go/bin:$PATH"
  fi
  have go || die "Go is not installed (Lethe needs Go 1.$LETHE_GO_MIN_MINOR or newer)" \
    "install it (https://go.dev/doc/install) and put its bin directory on PATH"
  local v
  # Inside the repository, so that GOTOOLCHAIN=auto may switch to the
  # toolchain that go.work asks for.
  v=$(cd "$LETHE_ROOT" && go env GOVERSION 2>&1) ||
    die "go does not work here: $v" "Lethe needs Go 1.$LETHE_GO_MIN_MINOR or newer"
  if [[ $v =~ ^go1\.([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -ge "$LETHE_GO_MIN_MINOR" ]; then
    return 0
  fi
  die "Lethe needs Go 1.$LETHE_GO_MIN_MINOR or newer; $(command -v go) is $v" \
    "install a newer Go (https://go.dev/doc/install) and put it first on PATH"
}

# ---------------------------------------------------------------- Redis

# parse_hostport URL DEFAULT_PORT sets _host and _port from a
# scheme://[user[:pass]@]host[:port][/path] URL.
parse_hostport() {
  local rest=${1#*://}
  rest=${rest%%/*}
  rest=${rest##*@}
  if [[ $rest == \[* ]]; then
    _host=${rest%%]*}
    _host=${_host#[}
    _port=${rest##*]}
    _port=${_port#:}
  elif [[ $rest == *:* ]]; then
    _host=${rest%:*}
    _port=${rest##*:}
  else
    _host=$rest
    _port=
  fi
  _port=${_port:-$2}
}

# redis_ping HOST PORT succeeds when a Redis server answers there (a server
# that wants a password counts: it is up).
redis_ping() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "PING\r\n" >&3
    IFS= read -r line <&3 || exit 1
    [[ $line == +PONG* || $line == -NOAUTH* ]]' "$1" "$2" 2>/dev/null
}

# ensure_redis [URL] makes the Redis at URL (default $LETHE_REDIS_URL or
# redis://127.0.0.1:6379/0) reachable: when it is a loopback address and
# nothing answers, installs redis-server if needed and starts one on
# 127.0.0.1 that keeps nothing on disk.
ensure_redis() {
  local url=${1:-${LETHE_REDIS_URL:-redis://127.0.0.1:6379/0}}
  local _host _port
  parse_hostport "$url" 6379
  redis_ping "$_host" "$_port" && return 0
  is_loopback "$_host" ||
    die "Redis at $_host:$_port does not answer" \
      "start it, or unset the variable that points there to use a local one"
  if tcp_open "$_host" "$_port"; then
    die "something listens on $_host:$_port but does not answer like Redis" \
      "stop it or point LETHE_REDIS_URL / LETHE_TEST_REDIS_URL at another port"
  fi
  ensure_cmd redis-server redis-server
  # A freshly installed package may have started its own service.
  if wait_for 5 redis_ping "$_host" "$_port"; then
    say "Redis is up on $_host:$_port"
    return 0
  fi
  say "starting redis-server on 127.0.0.1:$_port (nothing kept on disk)"
  if [ "$(id -u)" -eq 0 ]; then
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$_port" \
      --save "" --appendonly no --dir /var/lib/redis \
      --logfile /var/log/redis/ci.log >/dev/null ||
      die "redis-server did not start" "see /var/log/redis/ci.log"
    _lethe_redis_log=/var/log/redis/ci.log
  else
    mkdir -p "$LETHE_ROOT/.lethe/redis" "$LETHE_ROOT/.lethe/log"
    _lethe_redis_log="$LETHE_ROOT/.lethe/log/redis.log"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$_port" \
      --save "" --appendonly no --dir "$LETHE_ROOT/.lethe/redis" \
      --pidfile "$LETHE_ROOT/.lethe/redis/redis.pid" \
      --logfile "$_lethe_redis_log" >/dev/null ||
      die "redis-server did not start" "see $_lethe_redis_log"
  fi
  wait_for 10 redis_ping "$_host" "$_port" ||
    die "redis-server started but does not answer on 127.0.0.1:$_port" "see $_lethe_redis_log"
}

# ---------------------------------------------------------------- PostgreSQL

LETHE_PG_HOST=127.0.0.1
LETHE_PG_PORT=${LETHE_PG_PORT:-5432}

pg_up() {
  if have pg_isready; then
    pg_isready -q -h "$LETHE_PG_HOST" -p "$LETHE_PG_PORT" -t 2
  else
    tcp_open "$LETHE_PG_HOST" "$LETHE_PG_PORT"
  fi
}

# pg_superuser_tcp succeeds when the postgres role may connect over TCP
# without a password (trust), as on the project's machines.
pg_superuser_tcp() {
  PGCONNECT_TIMEOUT=5 psql -X -w -q -tA \
    "postgresql://postgres@$LETHE_PG_HOST:$LETHE_PG_PORT/postgres" \
    -c 'SELECT 1' >/dev/null 2>&1
}

# pg_admin SQL runs SQL as the database superuser and prints the rows
# (unaligned, tuples only). Over TCP as postgres where that needs no
# password, else through the local socket as the OS user postgres.
_lethe_pg_admin=
pg_admin() {
  if [ -z "$_lethe_pg_admin" ]; then
    if pg_superuser_tcp; then
      _lethe_pg_admin=tcp
    elif ! id postgres >/dev/null 2>&1; then
      die "cannot act as the PostgreSQL superuser: postgres on $LETHE_PG_HOST:$LETHE_PG_PORT needs a password and there is no local postgres user" \
        "create a role lethe (password lethe, CREATEDB) yourself, or allow trust for 127.0.0.1 in pg_hba.conf"
    elif [ "$(id -u)" -eq 0 ]; then
      _lethe_pg_admin=su
    elif have sudo; then
      _lethe_pg_admin=sudo
      say "asking sudo to run psql as the postgres user (to create the lethe role)"
    else
      die "cannot act as the PostgreSQL superuser: postgres needs a password over TCP, and there is no sudo" \
        "run this once as root, or allow trust for 127.0.0.1 in pg_hba.conf"
    fi
  fi
  local psql=(psql -X -q -tA -v ON_ERROR_STOP=1)
  case $_lethe_pg_admin in
    tcp)
      printf '%s\n' "$1" | PGCONNECT_TIMEOUT=5 "${psql[@]}" -w \
        "postgresql://postgres@$LETHE_PG_HOST:$LETHE_PG_PORT/postgres"
      ;;
    su)
      printf '%s\n' "$1" | (cd / && su -s /bin/sh postgres -c \
        "psql -X -q -tA -v ON_ERROR_STOP=1 -p $LETHE_PG_PORT -d postgres")
      ;;
    sudo)
      printf '%s\n' "$1" | (cd / && sudo -u postgres "${psql[@]}" -p "$LETHE_PG_PORT" -d postgres)
      ;;
  esac
}

# _pg_start starts the local cluster that is configured for LETHE_PG_PORT
# (creating one when the machine has none).
_pg_start() {
  local ver name port line
  have pg_lsclusters || return 1
  while read -r ver name port _; do
    if [ "$port" = "$LETHE_PG_PORT" ]; then
      say "starting PostgreSQL cluster $ver/$name on port $port"
      as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start ||
        die "pg_ctlcluster $ver $name start failed" \
          "see /var/log/postgresql/postgresql-$ver-$name.log"
      return 0
    fi
  done < <(pg_lsclusters -h 2>/dev/null)
  if [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
    # shellcheck disable=SC2012 # version numbers
    ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
    [ -n "$ver" ] || return 1
    say "creating PostgreSQL cluster $ver/main on port $LETHE_PG_PORT"
    as_root pg_createcluster "$ver" main --port "$LETHE_PG_PORT" >/dev/null
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start ||
      die "pg_ctlcluster $ver main start failed" "see /var/log/postgresql/postgresql-$ver-main.log"
    return 0
  fi
  line=$(pg_lsclusters -h | awk '{print $1 "/" $2 " on port " $3}' | paste -sd, -)
  die "no PostgreSQL cluster is configured for port $LETHE_PG_PORT (found: $line)" \
    "start one on 127.0.0.1:$LETHE_PG_PORT, or set LETHE_PG_PORT"
}

# ensure_postgres [DB...] makes PostgreSQL answer on 127.0.0.1:LETHE_PG_PORT
# (installing and starting it when needed), then makes sure the role lethe
# (password lethe) and the databases DB..., owned by lethe, exist.
ensure_postgres() {
  if ! pg_up; then
    have pg_ctlcluster || apt_install postgresql
    # A freshly installed package may have started its cluster.
    if ! wait_for 5 pg_up; then
      _pg_start || die "PostgreSQL is installed but no cluster could be started" \
        "check pg_lsclusters and /var/log/postgresql/"
      wait_for 30 pg_up || die "PostgreSQL does not answer on $LETHE_PG_HOST:$LETHE_PG_PORT" \
        "see /var/log/postgresql/ (pg_lsclusters lists the clusters)"
    fi
    say "PostgreSQL is up on $LETHE_PG_HOST:$LETHE_PG_PORT"
  fi
  ensure_cmd psql postgresql-client
  pg_admin "DO \$\$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'lethe') THEN
    CREATE ROLE lethe LOGIN CREATEDB PASSWORD 'lethe';
  END IF;
END\$\$;
ALTER ROLE lethe LOGIN CREATEDB PASSWORD 'lethe';" >/dev/null ||
    die "could not create the PostgreSQL role lethe" "see the psql message above"
  local db
  for db in "$@"; do
    [[ $db =~ ^[a-z_][a-z0-9_]*$ ]] || die "bad database name: $db"
    if [ -z "$(pg_admin "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
      say "creating database $db (owner lethe)"
      pg_admin "CREATE DATABASE $db OWNER lethe" >/dev/null ||
        die "could not create database $db" "see the psql message above"
    else
      pg_admin "ALTER DATABASE $db OWNER TO lethe" >/dev/null
    fi
  done
  PGPASSWORD=lethe PGCONNECT_TIMEOUT=5 psql -X -w -q -tA -h "$LETHE_PG_HOST" -p "$LETHE_PG_PORT" \
    -U lethe -d "${1:-postgres}" -c 'SELECT 1' >/dev/null ||
    die "the role lethe cannot log in over TCP with its password" \
      "pg_hba.conf needs a 'host all all 127.0.0.1/32 scram-sha-256' (or md5/trust) line"
}

# pg_drop_database DB drops DB (and its connections) if it exists.
pg_drop_database() {
  [[ $1 =~ ^[a-z_][a-z0-9_]*$ ]] || die "bad database name: $1"
  pg_admin "SET client_min_messages TO warning; DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null
}

# ---------------------------------------------------------------- NATS

LETHE_NATS_BIN="$LETHE_ROOT/.lethe/bin/nats-server"

# ensure_nats_bin builds nats-server $LETHE_NATS_VERSION into .lethe/bin
# unless it is there already (the OS package is too old for Lethe).
ensure_nats_bin() {
  if [ -x "$LETHE_NATS_BIN" ] &&
    [ "$("$LETHE_NATS_BIN" --version 2>/dev/null)" = "nats-server: $LETHE_NATS_VERSION" ]; then
    return 0
  fi
  ensure_go
  say "building nats-server $LETHE_NATS_VERSION into .lethe/bin (once)"
  mkdir -p "$LETHE_ROOT/.lethe/bin"
  (cd "$LETHE_ROOT" && GOBIN="$LETHE_ROOT/.lethe/bin" \
    go install "github.com/nats-io/nats-server/v2@$LETHE_NATS_VERSION") ||
    die "building nats-server $LETHE_NATS_VERSION failed" "see the go messages above"
}

LETHE_NATS_PORT=${LETHE_NATS_PORT:-4333}
LETHE_NATS_HTTP_PORT=${LETHE_NATS_HTTP_PORT:-8333}
LETHE_NATS_URL_LOCAL="nats://127.0.0.1:$LETHE_NATS_PORT"
LETHE_NATS_PIDFILE="$LETHE_ROOT/.lethe/run/nats-server.pid"
LETHE_NATS_LOG="$LETHE_ROOT/.lethe/log/nats-server.log"
LETHE_NATS_STORE="$LETHE_ROOT/.lethe/nats"

_nats_healthy() {
  curl -fsS -o /dev/null --max-time 2 \
    "http://127.0.0.1:$LETHE_NATS_HTTP_PORT/healthz?js-enabled-only=true" 2>/dev/null
}

# start_nats runs our own nats-server with JetStream on
# 127.0.0.1:LETHE_NATS_PORT (monitoring on 127.0.0.1:LETHE_NATS_HTTP_PORT),
# storing in .lethe/nats. When it runs already, it is reused.
start_nats() {
  local run="$LETHE_ROOT/.lethe/run" conf="$LETHE_ROOT/.lethe/run/nats-server.conf" pid
  ensure_cmd curl curl
  if pid=$(pid_alive "$LETHE_NATS_PIDFILE" "$LETHE_NATS_BIN"); then
    if wait_for 10 _nats_healthy; then
      say "nats-server already runs (pid $pid) on $LETHE_NATS_URL_LOCAL; reusing it"
      return 0
    fi
    die "our nats-server (pid $pid) runs but is not healthy" \
      "see $LETHE_NATS_LOG; stop it with: kill $pid"
  fi
  ensure_nats_bin
  local port
  for port in "$LETHE_NATS_PORT" "$LETHE_NATS_HTTP_PORT"; do
    if tcp_open 127.0.0.1 "$port"; then
      die "port 127.0.0.1:$port is taken by another program (ss -ltnp shows which)" \
        "stop it, or set LETHE_NATS_PORT / LETHE_NATS_HTTP_PORT to free ports"
    fi
  done
  mkdir -p "$run" "$LETHE_ROOT/.lethe/log" "$LETHE_NATS_STORE"
  cat >"$conf" <<EOF
# Written by scripts/lib.sh start_nats; rewritten at every start.
server_name: lethe-local
listen: 127.0.0.1:$LETHE_NATS_PORT
http: 127.0.0.1:$LETHE_NATS_HTTP_PORT
pid_file: "$LETHE_NATS_PIDFILE"
log_file: "$LETHE_NATS_LOG"
jetstream {
  store_dir: "$LETHE_NATS_STORE"
  # The server's default (fsync every 2 minutes): fast, but acked writes
  # may be lost on power loss. "always" fsyncs every write (see DESIGN.md).
  sync_interval: "${LETHE_NATS_SYNC:-2m}"
}
EOF
  # Per-service credentials (lethe-nats-auth keys wrote the directory):
  # nats-server resolves an include from the including file's directory.
  if [ -n "${LETHE_NATS_AUTH_DIR:-}" ]; then
    [ -r "$LETHE_NATS_AUTH_DIR/auth.conf" ] ||
      die "LETHE_NATS_AUTH_DIR=$LETHE_NATS_AUTH_DIR holds no auth.conf" "run lethe-nats-auth keys -dir $LETHE_NATS_AUTH_DIR"
    printf 'include "%s"\n' "$(realpath --relative-to="$run" "$LETHE_NATS_AUTH_DIR/auth.conf")" >>"$conf"
  fi
  say "starting nats-server $LETHE_NATS_VERSION on $LETHE_NATS_URL_LOCAL (JetStream, store .lethe/nats)"
  : >"$LETHE_NATS_LOG"
  nohup "$LETHE_NATS_BIN" -c "$conf" >>"$LETHE_NATS_LOG" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$LETHE_NATS_PIDFILE"
  if ! wait_http "http://127.0.0.1:$LETHE_NATS_HTTP_PORT/healthz?js-enabled-only=true" 30 "$pid"; then
    tail -n 20 "$LETHE_NATS_LOG" >&2 || true
    die "nats-server did not become healthy" "see $LETHE_NATS_LOG"
  fi
}

stop_nats() {
  local pid
  if pid=$(pid_alive "$LETHE_NATS_PIDFILE" "$LETHE_NATS_BIN"); then
    say "stopping nats-server (pid $pid)"
  fi
  stop_pidfile "$LETHE_NATS_PIDFILE" "$LETHE_NATS_BIN"
}

# ensure_stripe_mock_bin builds stripe-mock, pinned, into .lethe/bin once
# (from the Go module proxy). Its -version says "master": the module version
# recorded in the binary tells whether it is the pinned one. Sets
# LETHE_STRIPE_MOCK_BIN_PATH.
LETHE_STRIPE_MOCK_VERSION=v0.203.0
ensure_stripe_mock_bin() {
  LETHE_STRIPE_MOCK_BIN_PATH="$LETHE_ROOT/.lethe/bin/stripe-mock"
  if ! go version -m "$LETHE_STRIPE_MOCK_BIN_PATH" 2>/dev/null |
    grep -Eq "^[[:space:]]+mod[[:space:]]+github.com/stripe/stripe-mock[[:space:]]+${LETHE_STRIPE_MOCK_VERSION}[[:space:]]"; then
    say "building stripe-mock $LETHE_STRIPE_MOCK_VERSION into .lethe/bin (once)"
    GOBIN="$LETHE_ROOT/.lethe/bin" go install "github.com/stripe/stripe-mock@$LETHE_STRIPE_MOCK_VERSION" ||
      die "building stripe-mock $LETHE_STRIPE_MOCK_VERSION failed" "see the go messages above"
  fi
}

# start_stripe_mock starts stripe-mock on 127.0.0.1 (it listens on every
# interface unless both addresses are given: both always are) and waits
# until it answers. Idempotent: a running one from this demo is reused.
LETHE_STRIPE_MOCK_PORT=${LETHE_STRIPE_MOCK_PORT:-12111}
LETHE_STRIPE_MOCK_PIDFILE="$LETHE_ROOT/.lethe/run/stripe-mock.pid"
start_stripe_mock() {
  ensure_stripe_mock_bin
  mkdir -p "$LETHE_ROOT/.lethe/run" "$LETHE_ROOT/.lethe/log"
  if pid_alive "$LETHE_STRIPE_MOCK_PIDFILE" "$LETHE_STRIPE_MOCK_BIN_PATH" >/dev/null; then
    return 0
  fi
  if tcp_open 127.0.0.1 "$LETHE_STRIPE_MOCK_PORT"; then
    die "port 127.0.0.1:$LETHE_STRIPE_MOCK_PORT (for stripe-mock) is busy" \
      "stop what listens there, or set LETHE_STRIPE_MOCK_PORT to a free port"
  fi
  nohup "$LETHE_STRIPE_MOCK_BIN_PATH" -http-addr "127.0.0.1:$LETHE_STRIPE_MOCK_PORT" \
    -https-addr "127.0.0.1:$((LETHE_STRIPE_MOCK_PORT + 1))" \
    >"$LETHE_ROOT/.lethe/log/stripe-mock.log" 2>&1 </dev/null &
  echo $! >"$LETHE_STRIPE_MOCK_PIDFILE"
  wait_for 30 tcp_open 127.0.0.1 "$LETHE_STRIPE_MOCK_PORT" ||
    die "stripe-mock did not listen on 127.0.0.1:$LETHE_STRIPE_MOCK_PORT within 30 s" "read .lethe/log/stripe-mock.log"
  say "started stripe-mock on http://127.0.0.1:$LETHE_STRIPE_MOCK_PORT (the payment provider's stand-in)"
}

stop_stripe_mock() {
  stop_pidfile "$LETHE_STRIPE_MOCK_PIDFILE" "$LETHE_ROOT/.lethe/bin/stripe-mock"
}
