#!/usr/bin/env bash
# What the runtimes' own profilers cost the target (by hand, not in CI): py-spy on a Python
# service, Java Flight Recorder on a JVM, Node's inspector on a Node.js service; the test
# services of tests/fixtures, one endpoint at a time. For each, the capacity is hunted once
# unprofiled; then steps at SHARES % of it (default 80,120) run with each setting, ROUNDS
# times, alternating:
#   none   --profiler none --offcpu off   (no tail: the reference)
#   auto   knee's default for the runtime (its CPU profiler and its view of the waits)
# The counted figures must not depend on the setting (the profilers record in a tail after
# the counted part); the tail's good throughput is what the target managed *while
# profiled*: at a share above 100 % it is the profiled capacity, to set against the
# counted (unprofiled) good throughput of the same step.
# Needs python3 + py-spy, a JDK (java, jfr) and node; a runtime that is missing is skipped.
# Usage: bash bench/runtime_cost.sh   (env: ROUNDS=2 SHARES=80,120 STEP=3s ONLY=python-cpu)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
SHARES=${SHARES:-80,120}
STEP=${STEP:-3s}
ONLY=${ONLY:-}
cargo build --release --quiet
KNEE=$PWD/target/release/knee
OUT=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$OUT"; }
trap cleanup EXIT

# Starts a service (its command in "$@"), its stdin a FIFO held open; sets PORT and PID.
start() {
  local name=$1; shift
  mkfifo "$OUT/$name.in"
  "$@" < "$OUT/$name.in" > "$OUT/$name.port" 2>/dev/null &
  PID=$!
  PIDS+=("$PID")
  exec {HOLD}>"$OUT/$name.in"
  for _ in $(seq 1 100); do [ -s "$OUT/$name.port" ] && break; sleep 0.1; done
  PORT=$(head -1 "$OUT/$name.port")
}

measure() {
  local label=$1 url=$2
  [ -n "$ONLY" ] && [ "$ONLY" != "$label" ] && return
  "$KNEE" hunt "$url" --pid "$PID" -q --out "$OUT/$label-capacity" \
    --profiler none --offcpu off --step-duration 1s --slo p99=100ms >/dev/null 2>&1 || true
  local capacity
  capacity=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['hunt']['capacity_rps'] or 0)" "$OUT/$label-capacity/run.json")
  local rates
  rates=$(python3 -c "import sys; c=float(sys.argv[1]); print(','.join(str(round(c*f/100)) for f in map(int, sys.argv[2].split(','))))" "$capacity" "$SHARES")
  echo "== $label: capacity $capacity req/s unprofiled; steps $rates req/s ($SHARES %)"
  for round in $(seq 1 "$ROUNDS"); do
    "$KNEE" run --url "$url" --pid "$PID" --steps "$rates" --step-duration "$STEP" -q \
      --out "$OUT/$label-none-$round" --profiler none --offcpu off >/dev/null 2>&1 || true
    "$KNEE" run --url "$url" --pid "$PID" --steps "$rates" --step-duration "$STEP" -q \
      --out "$OUT/$label-auto-$round" >/dev/null 2>&1 || true
  done
  python3 - "$OUT" "$label" "$ROUNDS" <<'EOF'
import json, os, sys
out, label, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
for setting in ("none", "auto"):
    for r in range(1, rounds + 1):
        path = os.path.join(out, f"{label}-{setting}-{r}", "run.json")
        if not os.path.exists(path):
            print(f"  {setting:5} {r}: no run.json"); continue
        run = json.load(open(path))
        cells = []
        for s in run["steps"]:
            cell = f"{s['name'][5:]}: counted {s['ok_rps']:.0f}/s p99 {s['latency_ms']['p99']:.1f} ms"
            tail = s.get("profiled")
            if tail:
                cost = 100.0 * (tail["ok_rps"] - s["ok_rps"]) / max(s["ok_rps"], 1e-9)
                cell += f" | profiled {tail['ok_rps']:.0f}/s ({cost:+.1f} %) p99 {tail['latency_ms']['p99']:.1f} ms"
            cells.append(cell)
        prof = (run.get("profiling") or {})
        print(f"  {setting:5} {r}: " + "; ".join(cells) + (f"  [{prof.get('cpu')}, {prof.get('offcpu')}]" if setting == "auto" else ""))
EOF
}

fixtures=$PWD/tests/fixtures
if command -v python3 >/dev/null && command -v py-spy >/dev/null; then
  start python python3 "$fixtures/python/runtime_service.py"
  measure python-cpu "http://127.0.0.1:$PORT/cpu"
  measure python-lock "http://127.0.0.1:$PORT/lock"
else
  echo "python3 or py-spy missing: Python skipped"
fi
if command -v java >/dev/null && command -v jfr >/dev/null; then
  start jvm java -XX:+UseSerialGC -Xmx256m "$fixtures/java/RuntimeService.java"
  # The JIT's first seconds are its compiler's: warm it before measuring.
  "$KNEE" run --url "http://127.0.0.1:$PORT/cpu" --steps 300 --step-duration 5s -q \
    --out "$OUT/warm" --profiler none --offcpu off >/dev/null 2>&1 || true
  measure jvm-cpu "http://127.0.0.1:$PORT/cpu"
  measure jvm-sync "http://127.0.0.1:$PORT/sync"
else
  echo "java or jfr missing: JVM skipped"
fi
if command -v node >/dev/null; then
  start node node "$fixtures/node/service.js"
  measure node-cpu "http://127.0.0.1:$PORT/cpu"
else
  echo "node missing: Node.js skipped"
fi
