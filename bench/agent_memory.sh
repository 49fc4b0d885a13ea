#!/usr/bin/env bash
# What knee's profiling agent costs the memory of a service that embeds it (by hand, not in
# CI). Starts the demo (which mounts the agent), reads its RSS idle, then under a steady load
# (RATE req/s on /api, from knee itself) before any profile, after the first one-second
# profile and after the tenth, and idle again after the load. Prints each figure in MB and
# the samples each profile held.
# Usage: bash bench/agent_memory.sh         (env: RATE=400 PROFILES=10 FREQ=100)
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-400}
PROFILES=${PROFILES:-10}
FREQ=${FREQ:-100}
cargo build --release --quiet
KNEE=$PWD/target/release/knee
OUT=$(mktemp -d)
"$KNEE" demo --port 0 > "$OUT/demo.log" 2>&1 &
DEMO=$!
LOAD=
trap 'kill $DEMO ${LOAD:-} 2>/dev/null; rm -rf "$OUT"' EXIT
for _ in $(seq 50); do grep -q "listening on" "$OUT/demo.log" && break; sleep 0.1; done
BASE=$(grep -o "http://127.0.0.1:[0-9]*" "$OUT/demo.log" | head -1)
rss() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$DEMO/status"; }
profile() {
  curl -s -o /dev/null -D - "$BASE/debug/pprof/profile?seconds=1&frequency=$FREQ" \
    | awk 'tolower($1) == "x-samples:" { printf "%d", $2 }'
}
echo "idle:                        $(rss) MB"
"$KNEE" run --url "$BASE/api" --rate "$RATE" --duration $((PROFILES * 2 + 8))s --no-sample -q \
  --out "$OUT/load" > "$OUT/load.log" 2>&1 &
LOAD=$!
sleep 3
echo "at $RATE req/s, no profile yet: $(rss) MB"
samples=$(profile)
echo "after profile 1:             $(rss) MB ($samples samples)"
for i in $(seq 2 "$PROFILES"); do samples=$(profile); done
echo "after profile $PROFILES:            $(rss) MB ($samples samples in the last)"
wait $LOAD || true
LOAD=
sleep 1
echo "idle after the load:         $(rss) MB"
