#!/usr/bin/env bash
# The walkthrough of docs/database.md: a small service with PostgreSQL behind it (one customer's orders
# per request, 400,000 rows, no index), hunted, fixed with an index, hunted again, compared.
# Needs Debian's postgresql and python3-psycopg2; run from the repository's root after
# `cargo build --release`. Everything listens on 127.0.0.1; the cluster lives in a temporary
# directory (run as `nobody` when this runs as root: initdb refuses root) and is removed at
# the end. The three run folders go to reports/walkthrough-{before,after,compare}.
# OBSERVER=1: the service's host is read through `knee observe --pid SERVICE` (as on a staging
# box the generator does not share), and the folders are reports/walkthrough-observed-*.
set -euo pipefail
KNEE=${KNEE:-target/release/knee}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort | tail -1)
DIR=$(mktemp -d /tmp/knee-walkthrough.XXXXXX)
AS=()
if [ "$(id -u)" = 0 ]; then
    chown nobody:nogroup "$DIR"
    AS=(runuser -u nobody --)
fi
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
OBSERVING=
cleanup() {
    [ -n "$OBSERVING" ] && kill "$OBSERVING" 2>/dev/null || true
    exec 3>&- || true
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT

"${AS[@]}" "$PGBIN/initdb" -D "$DIR/data" -U knee --auth=trust -E UTF8 >/dev/null
"${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w start \
    -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=300" >/dev/null
psql() { "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U knee -d postgres -qc "$1"; }
psql "CREATE TABLE orders (id serial, customer int, amount int);
      INSERT INTO orders (customer, amount)
        SELECT (random() * 10000)::int, 1 FROM generate_series(1, 400000);
      ANALYZE orders;"

# The service exits when its stdin (our fd 3) closes.
mkfifo "$DIR/stdin"
/usr/bin/python3 tests/fixtures/python/orders_service.py \
    "host=127.0.0.1 port=$PORT user=knee dbname=postgres" <"$DIR/stdin" >"$DIR/port" &
SERVICE=$!
exec 3>"$DIR/stdin"
until [ -s "$DIR/port" ]; do sleep 0.1; done
URL="http://127.0.0.1:$(head -1 "$DIR/port")/orders?customer=5"

TARGET=(--pid "$SERVICE")
RUNS=reports/walkthrough
if [ -n "${OBSERVER:-}" ]; then
    "$KNEE" observe --listen 127.0.0.1:0 --pid "$SERVICE" >"$DIR/observe" &
    OBSERVING=$!
    until grep -q 'http://' "$DIR/observe"; do sleep 0.1; done
    TARGET=(--observer "staging=$(grep -o 'http://[^ ]*' "$DIR/observe")")
    RUNS=reports/walkthrough-observed
fi
rm -rf "$RUNS-before" "$RUNS-after" "$RUNS-compare"
"$KNEE" hunt "$URL" "${TARGET[@]}" --slo p99=500ms --out "$RUNS-before" || true
psql "CREATE INDEX ON orders (customer); ANALYZE orders;"
"$KNEE" hunt "$URL" "${TARGET[@]}" --slo p99=500ms --out "$RUNS-after" || true
"$KNEE" compare "$RUNS-before" "$RUNS-after" --out "$RUNS-compare"
