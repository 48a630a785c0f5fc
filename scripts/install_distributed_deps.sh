#!/usr/bin/env bash
# Debian packages the distributed e2e test (tests/e2e_distributed, `make e2e-distributed`) needs:
#   - redis-server  (the Celery broker; the test starts its own on a free loopback port)
#   - postgresql    (the metadata DB; the test makes its own cluster in a temp dir with initdb)
# The Python side (apache-airflow-providers-celery, psycopg2-binary) comes from the `dev` extra.
# Idempotent: installs only what is missing and says what it did. apt-get needs root (or sudo).
# It never starts, stops or configures the system's own redis/postgresql services.
set -euo pipefail

say() { echo "install_distributed_deps: $*"; }

PG_BIN=""
find_pg_bin() {
    PG_BIN=""
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
            PG_BIN="$dir"
            return 0
        fi
    done
    return 1
}

missing=()
if command -v redis-server >/dev/null 2>&1; then
    say "redis-server already installed: $(redis-server --version | head -1)"
else
    missing+=(redis-server)
fi
if find_pg_bin; then
    say "postgresql already installed: $("$PG_BIN/postgres" --version) ($PG_BIN)"
else
    missing+=(postgresql)
fi

if [ "${#missing[@]}" -eq 0 ]; then
    say "nothing to install"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { say "need root or sudo to apt-get install ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
fi
say "installing Debian package(s): ${missing[*]}"
$SUDO apt-get update -qq
# policy-rc.d: Debian's maintainer scripts would start the system's redis/postgres services where an
# init system runs; the test never uses them, so do not start them (exit 101 = "action forbidden").
policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    made_policy=1
fi
cleanup() { if [ -n "$made_policy" ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

command -v redis-server >/dev/null 2>&1 || { say "apt-get finished but redis-server is missing" >&2; exit 1; }
find_pg_bin || { say "apt-get finished but no /usr/lib/postgresql/*/bin/initdb" >&2; exit 1; }
say "installed: $(redis-server --version | head -1); $("$PG_BIN/postgres" --version) ($PG_BIN)"
