#!/usr/bin/env bash
# What knee's profilers cost the target, and whether the hold figures a user quotes carry any
# of it (by hand, not in CI). The demo with its lock and pool fixed is CPU-bound on the 2
# cores; its capacity is hunted once, then it runs steps at SHARES % of it (default
# 50,80,95) once per profiler setting, ROUNDS times each, alternating:
#   none     --profiler none --offcpu off   (no tail: the reference)
#   agent    the demo's own pprof agent (in-process sampling), no off-CPU
#   perf     --profiler perf (perf record -F 100 --call-graph dwarf), no off-CPU
#   offcpu   --profiler none --offcpu on   (perf sched_switch, DWARF stacks, 1 s)
#   all      the demo's agent and off-CPU: what `knee hunt --demo` does by default
# For each: at each step the counted good throughput and p99 (which must not depend on the
# setting: the profilers record in a tail after the counted part), then what the tail itself
# measured (good throughput and p99 while the profilers ran: their cost).
# Usage: bash bench/profiler_cost.sh        (env: ROUNDS=2 SHARES=50,80,95 STEP=4s SETTINGS=…)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
SHARES=${SHARES:-50,80,95}
STEP=${STEP:-4s}
cargo build --release --quiet
KNEE=$PWD/target/release/knee
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

declare -A FLAGS=(
  [none]="--profiler none --offcpu off"
  [agent]="--offcpu off"
  [perf]="--profiler perf --offcpu off"
  [offcpu]="--profiler none --offcpu on"
  [all]=""
)
# SETTINGS="none agent" runs only those (none first: the others are compared with it).
read -r -a ORDER <<< "${SETTINGS:-none agent perf offcpu all}"

# The capacity, once, unprofiled; then every setting at the same rates (its share of it).
"$KNEE" hunt --demo --demo-fix lock,pool -q --out "$OUT/capacity" --profiler none --offcpu off >/dev/null 2>&1
CAPACITY=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['hunt']['capacity_rps'])" "$OUT/capacity/run.json")
RATES=$(python3 -c "import sys; c=float(sys.argv[1]); print(','.join(str(round(c*f/100)) for f in map(int, sys.argv[2].split(','))))" "$CAPACITY" "$SHARES")
echo "capacity $CAPACITY req/s; steps $RATES req/s ($SHARES %)"
for round in $(seq 1 "$ROUNDS"); do
  for setting in "${ORDER[@]}"; do
    # shellcheck disable=SC2086
    "$KNEE" run --demo --demo-fix lock,pool --steps "$RATES" --step-duration "$STEP" -q \
      --out "$OUT/$setting-$round" ${FLAGS[$setting]} >/dev/null 2>&1 || true
  done
done

python3 - "$OUT" "$ROUNDS" "${ORDER[@]}" <<'EOF'
import json, sys, os
out, rounds, order = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
holds = {}
print(f"{'setting':8} {'round':>5}  step: counted good/s p99 ms | tail good/s p99 ms (cost)")
for setting in order:
    for r in range(1, rounds + 1):
        path = os.path.join(out, f"{setting}-{r}", "run.json")
        if not os.path.exists(path):
            print(f"{setting:8} {r:>5} no run.json"); continue
        run = json.load(open(path))
        cells = []
        for s in run["steps"]:
            line = f"{s['name'][5:]}: {s['ok_rps']:.0f} {s['latency_ms']['p99']:.1f}"
            holds.setdefault((setting, s["name"]), []).append((s["ok_rps"], s["latency_ms"]["p99"]))
            t = s.get("profiled")
            if t:
                cost = (t["ok_rps"] / s["ok_rps"] - 1) * 100 if s["ok_rps"] else 0
                ratio = t["latency_ms"]["p99"] / s["latency_ms"]["p99"] if s["latency_ms"]["p99"] else 0
                line += f" | {t['ok_rps']:.0f} {t['latency_ms']['p99']:.1f} ({cost:+.1f} %, {ratio:.2f}x)"
            cells.append(line)
        print(f"{setting:8} {r:>5}  " + "; ".join(cells))
print()
print("counted figures against the unprofiled runs' (mean over rounds):")
for setting in order[1:]:
    for (s, name), values in sorted(holds.items()):
        if s != setting or ("none", name) not in holds:
            continue
        base = holds[("none", name)]
        mean = lambda vs, i: sum(v[i] for v in vs) / len(vs)
        ok = mean(values, 0) / mean(base, 0) - 1 if mean(base, 0) else 0
        p99 = mean(values, 1) / mean(base, 1) if mean(base, 1) else 0
        print(f"  {setting:8} {name}: good/s {ok * 100:+.1f} %, p99 {p99:.2f}x")
EOF
