#!/usr/bin/env bash
# Every peer comparison in one run (by hand, not in CI), each part the script of its own:
#   1. bench/throughput.sh   knee vs wrk (closed model) and oha (CPU per request at a fixed rate)
#   2. bench/http2.sh        knee vs h2load (HTTP/2, the same connections and streams)
#   3. bench/agent_memory.sh the agent's RSS idle, before and after its first and tenth profile
# then the summary lines of each, together. Env is passed through (DUR, RATE, ROUNDS, ...).
# Usage: bash bench/peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for part in throughput http2 agent_memory; do
  echo "=== bench/$part.sh"
  bash "bench/$part.sh" 2>&1 | grep -v "^knee: \|^rate-\|^conc-\|^  profiled" | tee "$out/$part.txt"
done
echo "=== summary"
grep -h "^mean:\|^CPU per request:\|^knee/oha\|^knee/wrk\|^knee/h2load\|^ratio" "$out/throughput.txt" "$out/http2.txt" || true
grep -h "MB" "$out/agent_memory.txt" || true
