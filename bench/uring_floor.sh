#!/usr/bin/env bash
# The kernel's floor under the closed model (by hand, not in CI): a bare io_uring loop
# (bench/uring-floor: no parsing, timing or recording; one io_uring_enter per batch of
# sends and receives) beside knee and wrk, 50 connections on 2 threads against one nginx,
# DUR seconds each, alternating, ROUNDS times: requests/s and CPU per request (user + sys).
# If the bare loop costs what knee costs per request, what is left is the kernel's TCP path,
# which io_uring does not make cheaper here.
# Usage: bash bench/uring_floor.sh        (env: PORT=18082 DUR=5 ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-18082}
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-3}
URL="http://127.0.0.1:$PORT/"

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet
cargo build --release --quiet --manifest-path bench/uring-floor/Cargo.toml
KNEE=$PWD/target/release/knee
FLOOR=$PWD/bench/uring-floor/target/release/uring-floor
. bench/nginx.sh
start_nginx "$PORT" auto

json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
# "NAME REQ_PER_S REQUESTS USER_S SYS_S"
row() { echo "$1 $2 $3 $(cat "$tmp/t")"; }
for round in $(seq "$ROUNDS"); do
  /usr/bin/time -f "%U %S" -o "$tmp/t" "$FLOOR" "127.0.0.1:$PORT" 2 50 "$DUR" >"$tmp/f.txt"
  read -r n rps <"$tmp/f.txt"
  row uring-floor "$rps" "$n"
  rm -rf "$tmp/k"
  /usr/bin/time -f "%U %S" -o "$tmp/t" \
    "$KNEE" run -q --no-sample --url "$URL" --concurrency 50 --duration "${DUR}s" --warmup 0s --out "$tmp/k" >/dev/null 2>&1
  row knee "$(json "$tmp/k/run.json" "d['steps'][0]['achieved_rps']")" \
    "$(json "$tmp/k/run.json" "d['steps'][0]['requests'] + d['steps'][0]['warmup_requests']")"
  /usr/bin/time -f "%U %S" -o "$tmp/t" wrk -t2 -c50 -d"${DUR}s" "$URL" >"$tmp/wrk.txt"
  row wrk "$(awk '/Requests\/sec/ {print $2}' "$tmp/wrk.txt")" "$(awk '/requests in/ {print $1}' "$tmp/wrk.txt")"
done | python3 -c '
import sys, collections
seen = collections.defaultdict(list)
for line in sys.stdin:
    name, rps, n, user, sys_ = line.split()
    rps, n, user, sys_ = map(float, (rps, n, user, sys_))
    seen[name].append((rps, (user + sys_) / n * 1e6, user / n * 1e6))
    print(f"{name:>12} {rps:8.0f} req/s  {(user + sys_) / n * 1e6:5.2f} us CPU/req (user {user / n * 1e6:.2f})")
mean = lambda xs: sum(xs) / len(xs)
for name, rows in seen.items():
    print(f"mean {name:>12} {mean([r[0] for r in rows]):8.0f} req/s  {mean([r[1] for r in rows]):5.2f} us CPU/req (user {mean([r[2] for r in rows]):.2f})")
floor, knee = mean([r[1] for r in seen["uring-floor"]]), mean([r[1] for r in seen["knee"]])
print(f"knee / bare io_uring loop, CPU per request: {knee / floor:.2f}x")
'
