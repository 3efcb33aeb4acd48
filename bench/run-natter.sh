#!/bin/bash
# run-natter.sh prepare|start|count|stop HOME — Natter driver for ../shared/bench/bench.py
#   prepare: fresh HOME with alice's account (JID/PW env) in Natter's store and file keyring
#   start:   start Natter with that HOME (DISPLAY from env, else a private Xvfb); prints PID
#   count:   number of alice's 1:1 messages in Natter's store
#   stop:    graceful stop (SIGTERM, then SIGKILL after 15 s) of everything start started
# Binaries: $NATTER_BIN and $NATTER_TESTKIT, else this repository's target/release ones
# (cargo build --release -p natter -p natter-testkit). The kit's library: $BENCH_KIT, else
# ../../shared/bench next to this repository.
set -euo pipefail
here=$(dirname "$(realpath "$0")")
repo=$(dirname "$here")
kit=${BENCH_KIT:-$(realpath -m "$repo/../shared/bench")}
. "$kit/lib.sh"
cmd=${1:?usage: $0 prepare|start|count|stop HOME}; H=$(realpath -m "${2:?HOME}")
NATTER_BIN=${NATTER_BIN:-$repo/target/release/natter}
NATTER_TESTKIT=${NATTER_TESTKIT:-$repo/target/release/natter-testkit}
DATA=$H/.local/share/natter
DB=$DATA/natter.db

case $cmd in
prepare)
  rm -rf "$H"; mkdir -p "$H"
  "$NATTER_TESTKIT" prepare --home "$H" --jid "$JID" --password "$PW" \
    --host "${HOST:-127.0.0.1}" --port "${PORT:-5222}" ${CA:+--ca "$CA"} >/dev/null ;;
start)
  start_client "$H" env NATTER_KEYRING_FILE="$DATA/natter.keyring" \
    NATTER_KEYRING_SECRET_FILE="$DATA/keyring-secret" "$NATTER_BIN" ;;
count) sql_count "$DB" "select count(*) from message m join conversation c on c.id = m.conversation_id
                       join account a on a.id = c.account_id where a.jid = '$JID'" ;;
stop)  stop_client "$H" ;;
*) echo "usage: $0 prepare|start|count|stop HOME" >&2; exit 2 ;;
esac
