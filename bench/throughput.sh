#!/usr/bin/env bash
# knee vs wrk vs oha against one nginx on loopback, in the same run (by hand, not in CI).
#   1. closed model, 50 connections, DUR seconds each, alternating, ROUNDS times (4):
#      requests/s, CPU per request, and ratios (the mean's, and each round's: on a shared
#      2-core VM one round's knee/wrk swings 0.9-1.3x, so one round says little)
#   2. a fixed 10,000 req/s for DUR seconds, knee vs `oha -q 10000 --latency-correction`:
#      CPU seconds (user+sys, /usr/bin/time) per 100k requests, and the ratio
# knee runs with --no-sample (the peers sample nothing either).
# Usage: bash bench/throughput.sh        (env: PORT=18080 DUR=5 RATE=10000 ROUNDS=4)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-18080}
DUR=${DUR:-5}
RATE=${RATE:-10000}
URL="http://127.0.0.1:$PORT/"

install_tools() {
  local missing=()
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
  command -v wrk >/dev/null || missing+=(wrk)
  [ -x /usr/bin/time ] || missing+=(time)
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  command -v oha >/dev/null || cargo install oha --locked
}

install_tools
cargo build --release --quiet
KNEE=$PWD/target/release/knee
. bench/nginx.sh
start_nginx "$PORT" auto

json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

# Each prints "REQ_PER_S CPU_US_PER_REQUEST" (CPU: user+sys from /usr/bin/time). CPU per
# request is the steadier figure: the tools share the cores with nginx, so throughput swings
# with what else the VM runs, while the work each request costs the tool does not.
cpu_of() { awk '{print $1 + $2}' "$1"; }
per_request() { python3 -c "import sys; r, n, c = map(float, sys.argv[1:]); print(f'{r:.0f} {c / n * 1e6:.2f}')" "$@"; }
knee_closed() {
  rm -rf "$tmp/k"
  /usr/bin/time -f "%U %S" -o "$tmp/t" \
    "$KNEE" run -q --no-sample --url "$URL" --concurrency 50 --duration "${DUR}s" --warmup 0s --out "$tmp/k" >/dev/null
  per_request "$(json "$tmp/k/run.json" "d['steps'][0]['achieved_rps']")" \
    "$(json "$tmp/k/run.json" "d['steps'][0]['requests'] + d['steps'][0]['warmup_requests']")" "$(cpu_of "$tmp/t")"
}
wrk_closed() {
  /usr/bin/time -f "%U %S" -o "$tmp/t" wrk -t2 -c50 -d"${DUR}s" "$URL" >"$tmp/wrk.txt"
  per_request "$(awk '/Requests\/sec/ {print $2}' "$tmp/wrk.txt")" \
    "$(awk '/requests in/ {print $1}' "$tmp/wrk.txt")" "$(cpu_of "$tmp/t")"
}
oha_closed() {
  /usr/bin/time -f "%U %S" -o "$tmp/t" oha -z "${DUR}s" -c 50 --no-tui --output-format json "$URL" >"$tmp/oha.json"
  per_request "$(json "$tmp/oha.json" "d['summary']['requestsPerSec']")" \
    "$(json "$tmp/oha.json" "sum(d['statusCodeDistribution'].values())")" "$(cpu_of "$tmp/t")"
}

ROUNDS=${ROUNDS:-4}
echo "== closed model, 50 connections, ${DUR}s each, against nginx on $URL, $ROUNDS rounds"
rows=()
for round in $(seq "$ROUNDS"); do
  k=$(knee_closed); w=$(wrk_closed); o=$(oha_closed)
  rows+=("$k $w $o")
  set -- $k $w $o
  echo "round $round: knee $1 req/s ($2 us CPU/req)   wrk $3 req/s ($4)   oha $5 req/s ($6)"
done
printf '%s\n' "${rows[@]}" | python3 -c '
import sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
mean = lambda i: sum(r[i] for r in rows) / len(rows)
k, kc, w, wc, o, oc = (mean(i) for i in range(6))
print(f"mean: knee {k:.0f}  wrk {w:.0f}  oha {o:.0f} req/s   knee/wrk {k/w:.2f}x   knee/oha {k/o:.2f}x")
print(f"CPU per request: knee {kc:.2f} us  wrk {wc:.2f} us  oha {oc:.2f} us   knee/wrk {kc/wc:.2f}x   knee/oha {kc/oc:.2f}x")
per_round = ", ".join("%.2f" % x for x in sorted(r[0] / r[2] for r in rows))
print(f"knee/wrk requests/s by round: {per_round}")
'

echo "== fixed rate $RATE req/s for ${DUR}s, alternating, 3 rounds: CPU seconds per 100k requests"
ratios=()
for round in 1 2 3; do
  rm -rf "$tmp/kr"
  /usr/bin/time -f "%U %S" -o "$tmp/knee.time" \
    "$KNEE" run -q --no-sample --url "$URL" --rate "$RATE" --duration "${DUR}s" --warmup 0s --out "$tmp/kr" >/dev/null
  knee_req=$(json "$tmp/kr/run.json" "d['steps'][0]['requests'] + d['steps'][0]['warmup_requests']")
  knee_p99=$(json "$tmp/kr/run.json" "d['steps'][0]['latency_ms']['p99']")
  /usr/bin/time -f "%U %S" -o "$tmp/oha.time" \
    oha -z "${DUR}s" -q "$RATE" --latency-correction -c 50 --no-tui --output-format json "$URL" >"$tmp/ohar.json"
  oha_req=$(json "$tmp/ohar.json" "sum(d['statusCodeDistribution'].values())")
  oha_p99=$(json "$tmp/ohar.json" "d['latencyPercentiles']['p99'] * 1000")
  ratio=$(python3 - "$(cpu_of "$tmp/knee.time")" "$knee_req" "$(cpu_of "$tmp/oha.time")" "$oha_req" "$knee_p99" "$oha_p99" <<'PY'
import sys
kc, kr, oc, orq, kp99, op99 = map(float, sys.argv[1:])
kper, oper = kc / kr * 1e5, oc / orq * 1e5
print(f"{kper/oper:.3f}")
print(f"round: knee {kr:.0f} req, {kc:.2f} CPU s = {kper:.3f} s/100k (p99 {kp99:.2f} ms) | "
      f"oha {orq:.0f} req, {oc:.2f} CPU s = {oper:.3f} s/100k (p99 {op99:.2f} ms) | knee/oha {kper/oper:.2f}x", file=sys.stderr)
PY
)
  ratios+=("$ratio")
done
python3 - "${ratios[@]}" <<'PY'
import sys, statistics
r = sorted(map(float, sys.argv[1:]))
print(f"knee/oha CPU per request: median {statistics.median(r):.2f}x (rounds: {', '.join(f'{x:.2f}' for x in r)})")
PY
