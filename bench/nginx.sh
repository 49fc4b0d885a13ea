# Sourced by the benchmarks: starts nginx on 127.0.0.1:$1 with $2 worker processes
# (`auto` or a number), answering `200 ok` to every request, over HTTP/2 with prior
# knowledge (h2c) when $3 is `http2`; its folder is $tmp, and both go when the script exits.
start_nginx() {
  local port=$1 workers=$2 listen="127.0.0.1:$1"
  if [ "${3:-}" = http2 ]; then listen="$listen http2"; fi
  tmp=$(mktemp -d)
  cat >"$tmp/nginx.conf" <<CONF
worker_processes $workers;
pid $tmp/nginx.pid;
error_log $tmp/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  http2_max_concurrent_streams 128;
  server { listen $listen; location / { return 200 "ok\n"; } }
}
CONF
  /usr/sbin/nginx -c "$tmp/nginx.conf" -p "$tmp"
  trap 'kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true; rm -rf "$tmp"' EXIT
  sleep 0.5
}
