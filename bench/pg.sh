#!/bin/sh
# A throwaway PostgreSQL for the cluster benchmark (bench/cluster.py), as Airflow deployments run
# their metadata DB: its own server process, TCP on loopback, a database of its own.
#
#   bench/pg.sh install      install Debian's postgresql package unless initdb is already there
#   bench/pg.sh start        install PostgreSQL if missing, init .bench/pg, start it on a free
#                            port, (re)create the database "airflow"; writes its SQLAlchemy URL
#                            to .bench/pg/url
#   bench/pg.sh stop         stop it (no-op when it is not running)
#   bench/pg.sh restart      restart the running server (same port and data; the chaos benchmark's
#                            "metadata DB restarts" fault): open connections are cut
#   bench/pg.sh run CMD...   start, run CMD with BENCH_PG_URL set, stop whatever CMD did
#                            (also on failure or Ctrl-C); exits with CMD's status
#
# PostgreSQL refuses to run as root: as root, the server runs as the "postgres" user (created by
# Debian's package), which owns the data directory. Authentication is "trust" on loopback only:
# a local, disposable database that holds nothing but the benchmark's run.
set -eu

BENCH_HOME=${BENCH_HOME:-.bench}
PG_HOME=$(mkdir -p "$BENCH_HOME/pg" && cd "$BENCH_HOME/pg" && pwd)
DATA=$PG_HOME/data
SOCKETS=$PG_HOME/run
DB=airflow

pg_bin() {
    # initdb on PATH (resolved: /usr/local/bin may hold links to only a few of the tools), else
    # Debian's versioned directory.
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return 0
    fi
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$found" ] && [ -x "$found/initdb" ] && echo "$found"
}

ensure_installed() {
    if [ -z "$(pg_bin || true)" ]; then
        echo "PostgreSQL not found: installing Debian's postgresql package" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    BIN=$(pg_bin) || { echo "error: no initdb after installing postgresql" >&2; exit 1; }
}

as_owner() {
    # Run a PostgreSQL tool as the data directory's owner: "postgres" when we are root.
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

running() {
    [ -f "$DATA/postmaster.pid" ] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

start() {
    ensure_installed
    if running; then  # a previous run that was killed before it could stop the server
        as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
    fi
    mkdir -p "$SOCKETS"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$PG_HOME" "$SOCKETS"
    fi
    if [ ! -f "$DATA/PG_VERSION" ]; then
        as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$PG_HOME/initdb.log"
    fi
    port=$(free_port)
    # max_connections: every Airflow process keeps a pool (scheduler, dag-processor, api-server,
    # two triggerers), and the default 100 leaves little room for the benchmark's own reads.
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$PG_HOME/postgres.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $SOCKETS -c max_connections=200" >/dev/null
    # A fresh database every run, so that no earlier run's rows count in this one's figures.
    PGOPTIONS='-c client_min_messages=warning' as_owner "$BIN/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
    echo "postgresql+psycopg2://postgres@127.0.0.1:$port/$DB" >"$PG_HOME/url"
    echo "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data: $DATA)"
}

stop() {
    BIN=$(pg_bin || true)
    if [ -n "$BIN" ] && running; then
        as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
        echo "PostgreSQL stopped"
    fi
    rm -f "$PG_HOME/url"
}

restart() {
    BIN=$(pg_bin) || { echo "error: PostgreSQL is not installed" >&2; exit 1; }
    running || { echo "error: PostgreSQL is not running" >&2; exit 1; }
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$PG_HOME/postgres.log" -m fast -w -t 60 restart >/dev/null
}

case "${1:-}" in
    install) ensure_installed; echo "PostgreSQL tools in $BIN" ;;
    start) start ;;
    stop) stop ;;
    restart) restart ;;
    run)
        shift
        [ $# -gt 0 ] || { echo "usage: $0 run CMD..." >&2; exit 2; }
        trap 'stop' EXIT
        trap 'exit 130' INT TERM
        start
        status=0
        BENCH_PG_URL=$(cat "$PG_HOME/url") "$@" || status=$?
        exit "$status"
        ;;
    *)
        echo "usage: $0 install|start|stop|restart|run CMD..." >&2
        exit 2
        ;;
esac
