#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests drive for real when it is
# missing — Go (a Go service with net/http/pprof and the Prometheus client library's
# /metrics, built by the tests), node_exporter (a host's figures), perf (linux-perf: CPU
# and off-CPU profiles of a process), PostgreSQL and Debian's python3 with psycopg2 (a
# database behind a small service), a JDK (Java Flight Recorder's jfr) and Node.js (the
# runtimes' test services), nginx (a balancer in front of replicas) — from Debian's packages, and py-spy from PyPI; then runs the
# tests with
# KNEE_REQUIRE_TOOLS=1, so a tool that is still missing fails its tests instead of skipping
# them. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v go >/dev/null || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/prometheus/client_golang ] ||
    need+=(golang-github-prometheus-client-golang-dev)
command -v prometheus-node-exporter >/dev/null || need+=(prometheus-node-exporter)
command -v perf >/dev/null || need+=(linux-perf)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
/usr/bin/python3 -c 'import psycopg2' 2>/dev/null || need+=(python3-psycopg2)
command -v jfr >/dev/null || need+=(openjdk-17-jdk-headless)
command -v node >/dev/null || need+=(nodejs)
command -v nginx >/dev/null || need+=(nginx-light)
command -v py-spy >/dev/null || command -v pip3 >/dev/null || need+=(python3-pip)
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
if ! command -v py-spy >/dev/null && command -v pip3 >/dev/null; then
    echo "tests/run.sh: installing py-spy (PyPI)" >&2
    # Debian's python3 refuses system-wide pip installs unless told (PEP 668).
    pip3 install -q py-spy 2>/dev/null || pip3 install -q --break-system-packages py-spy
fi
export KNEE_REQUIRE_TOOLS=1
exec cargo test --locked "$@"
