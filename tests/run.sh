#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests drive for real when it is
# missing — Go (a Go service with net/http/pprof), perf (linux-perf: CPU and off-CPU
# profiles), node_exporter and PostgreSQL — from Debian's packages, then runs the tests with
# KNEE_REQUIRE_TOOLS=1, so a tool that is still missing fails its tests instead of skipping
# them. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v go >/dev/null || need+=(golang-go)
command -v perf >/dev/null || need+=(linux-perf)
command -v prometheus-node-exporter >/dev/null || need+=(prometheus-node-exporter)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || command -v postgres >/dev/null \
    || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "tests/run.sh: installing ${need[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "tests/run.sh: missing ${need[*]} and cannot install them (root and apt-get needed)" >&2
    fi
fi
# Debian's PostgreSQL keeps its binaries out of the PATH.
for dir in /usr/lib/postgresql/*/bin; do
    [ -d "$dir" ] && PATH="$PATH:$dir"
done
export PATH KNEE_REQUIRE_TOOLS=1
exec cargo test --locked "$@"
