#!/usr/bin/env bash
# knee vs h2load over HTTP/2 (h2c) against one nginx on loopback, in the same run (by hand,
# not in CI): the same connections and streams for both — C connections with S streams in
# flight on each (knee: --concurrency C*S --h2-streams S; h2load: -c C -m S) — DUR seconds
# each, alternating, ROUNDS times: requests/s, CPU per request (user+sys, /usr/bin/time) and
# the ratios. knee runs with --no-sample (h2load samples nothing either).
# Usage: bash bench/http2.sh        (env: PORT=18081 DUR=5 C=4 S=16 ROUNDS=2)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-18081}
DUR=${DUR:-5}
C=${C:-4}
S=${S:-16}
ROUNDS=${ROUNDS:-2}
URL="http://127.0.0.1:$PORT/"

missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v h2load >/dev/null || missing+=(nghttp2-client)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --quiet
KNEE=$PWD/target/release/knee
. bench/nginx.sh
start_nginx "$PORT" auto http2

json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
cpu_of() { awk '{print $1 + $2}' "$1"; }
per_request() { python3 -c "import sys; r, n, c = map(float, sys.argv[1:]); print(f'{r:.0f} {c / n * 1e6:.2f}')" "$@"; }

knee_h2() {
  rm -rf "$tmp/k"
  /usr/bin/time -f "%U %S" -o "$tmp/t" "$KNEE" run -q --no-sample --url "$URL" --http2 \
    --h2-streams "$S" --concurrency $((C * S)) --duration "${DUR}s" --warmup 0s --out "$tmp/k" >/dev/null
  per_request "$(json "$tmp/k/run.json" "d['steps'][0]['achieved_rps']")" \
    "$(json "$tmp/k/run.json" "d['steps'][0]['requests'] + d['steps'][0]['warmup_requests']")" "$(cpu_of "$tmp/t")"
}
h2load_run() {
  # h2load's own thread count: one per two connections, at most the cores knee's lanes use.
  /usr/bin/time -f "%U %S" -o "$tmp/t" h2load -D "$DUR" -c "$C" -m "$S" -t "$(nproc)" "$URL" >"$tmp/h2.txt"
  per_request "$(awk '/^finished in/ {print $4}' "$tmp/h2.txt")" \
    "$(awk '/^requests:/ {print $8}' "$tmp/h2.txt")" "$(cpu_of "$tmp/t")"
}

echo "== HTTP/2 (h2c), $C connections x $S streams, ${DUR}s each, against nginx on $URL, $ROUNDS rounds"
rows=()
for round in $(seq "$ROUNDS"); do
  k=$(knee_h2); h=$(h2load_run)
  rows+=("$k $h")
  set -- $k $h
  echo "round $round: knee $1 req/s ($2 us CPU/req)   h2load $3 req/s ($4 us CPU/req)"
done
printf '%s\n' "${rows[@]}" | python3 -c '
import sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
mean = lambda i: sum(r[i] for r in rows) / len(rows)
k, kc, h, hc = (mean(i) for i in range(4))
print(f"mean: knee {k:.0f}  h2load {h:.0f} req/s   knee/h2load {k/h:.2f}x")
print(f"CPU per request: knee {kc:.2f} us  h2load {hc:.2f} us   knee/h2load {kc/hc:.2f}x")
'
