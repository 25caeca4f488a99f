#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback, for the tests and for trying a shared study.
#
#   eval "$(tests/postgres.sh start [DIR])"   # prints the two export lines below
#   tests/postgres.sh stop [DIR]              # DIR: default $SCORELAB_POSTGRES_DIR
#
# start: installs Debian's server if it is missing (apt-get, as root), creates a cluster in DIR
# (default: a new temporary folder) with trust authentication on 127.0.0.1 only, starts it on a
# free port with its socket in DIR, creates the database `scorelab`, and prints
#   export SCORELAB_POSTGRES_DIR=DIR
#   export SCORELAB_TEST_POSTGRES=postgresql+psycopg://postgres@127.0.0.1:PORT/scorelab
# The server refuses to run as root: as root, the cluster belongs to the `postgres` user.
# stop: stops the server and deletes DIR (nothing there is worth keeping).
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

bin_dir() {  # the newest installed server's programs (Debian: /usr/lib/postgresql/<ver>/bin)
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
        echo "$dir"
    elif command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"
    fi
}

install_server() {
    if [[ "$(id -u)" != 0 ]]; then
        log "error: no PostgreSQL server found; install it (sudo apt-get install -y postgresql)"
        exit 2
    fi
    log "installing Debian's postgresql package"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
}

as_owner() {  # runs a server program as the cluster's owner (never as root)
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir="${1:-}" bin port
    bin="$(bin_dir)"
    if [[ -z "$bin" ]]; then
        install_server
        bin="$(bin_dir)"
    fi
    [[ -n "$dir" ]] || dir="$(mktemp -d -t scorelab-postgres.XXXXXX)"
    mkdir -p "$dir"
    [[ "$(id -u)" != 0 ]] || chown postgres: "$dir"
    chmod 700 "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log"
    port="$(free_port)"
    # fsync off: a throwaway cluster, lost with its folder anyway.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o \
        "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
        start >/dev/null
    echo "$port" >"$dir/port"
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres scorelab
    log "server $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir"
    echo "export SCORELAB_POSTGRES_DIR=$dir"
    echo "export SCORELAB_TEST_POSTGRES=postgresql+psycopg://postgres@127.0.0.1:$port/scorelab"
}

stop() {
    local dir="${1:-${SCORELAB_POSTGRES_DIR:-}}" bin
    if [[ -z "$dir" ]]; then
        log "error: which server? pass its folder or set SCORELAB_POSTGRES_DIR"
        exit 2
    fi
    bin="$(bin_dir)"
    if [[ -n "$bin" && -f "$dir/data/postmaster.pid" ]]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null || true
        log "server in $dir stopped"
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    start) start "${2:-}" ;;
    stop) stop "${2:-}" ;;
    *)
        log "usage: eval \"\$(tests/postgres.sh start [DIR])\"; tests/postgres.sh stop [DIR]"
        exit 2
        ;;
esac
