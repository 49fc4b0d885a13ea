#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests drive for real when it is
# missing — Go (a Go service with net/http/pprof, built by the tests) and perf (linux-perf:
# CPU profiles of a process) — from Debian's packages, then runs the tests with
# KNEE_REQUIRE_TOOLS=1, so a tool that is still missing fails its tests instead of skipping
# them. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v go >/dev/null || need+=(golang-go)
command -v perf >/dev/null || need+=(linux-perf)
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
export KNEE_REQUIRE_TOOLS=1
exec cargo test --locked "$@"
