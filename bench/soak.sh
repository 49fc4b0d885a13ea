#!/usr/bin/env bash
# knee's own footprint on a long soak (by hand, not in CI): a soak at RATE req/s against
# nginx on loopback (the target found by its port), WINDOW-second windows, DUR seconds in
# all. Prints knee's RSS once a minute (and at the end), the connections knee held per
# window (peak / mean, opened / closed), the target's fds per window, and the soak verdict.
# Usage: bash bench/soak.sh          (env: PORT=18090 RATE=5000 DUR=600 WINDOW=10)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-18090}
RATE=${RATE:-5000}
DUR=${DUR:-600}
WINDOW=${WINDOW:-10}
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
}
cargo build --release --quiet
KNEE=$PWD/target/release/knee
. bench/nginx.sh
start_nginx "$PORT" 2
cat >"$tmp/soak.toml" <<TOML
name = "soak-bench"
kind = "soak"
[target]
url = "http://127.0.0.1:$PORT/"
[load]
rate = $RATE
warmup = "2s"
duration = "${DUR}s"
window = "${WINDOW}s"
[observe]
interval = "1s"
TOML
"$KNEE" run "$tmp/soak.toml" -q --out "$tmp/run" >"$tmp/out.txt" 2>&1 &
pid=$!
start=$(date +%s)
echo "minute  knee RSS (MB)"
minute=0
while kill -0 "$pid" 2>/dev/null; do
  sleep 1
  now=$(date +%s)
  if [ $(( (now - start) / 60 )) -ge "$minute" ] && [ -r "/proc/$pid/status" ]; then
    rss=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$rss" ] && printf "%6d  %s\n" "$minute" "$rss"
    minute=$((minute + 1))
  fi
done
wait "$pid" || true
python3 - "$tmp/run/run.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
print("window       achieved/s  p99 ms  knee conns peak/mean  opened/closed  target fds  generator RSS MB")
for s in run["steps"]:
    g = s["generator"]
    series = (s.get("observed") or {}).get("samplers", {}).get("series", {})
    fds = series.get("target.fds", {}).get("mean")
    rss = series.get("generator.rss_mb", {}).get("max")
    print(f"{s['name']:<12} {s['achieved_rps']:>10.0f} {s['latency_ms']['p99']:>7.2f} "
          f"{g['connections']:>10} / {g.get('connections_mean', float('nan')):>5.1f} "
          f"{g.get('connections_opened', '-'):>6} / {g.get('connections_closed', '-'):<6} "
          f"{fds if fds is None else round(fds):>10} {rss if rss is None else round(rss, 1):>12}")
for line in (run.get("soak") or {}).get("verdicts", []):
    print("soak:", line)
PY
