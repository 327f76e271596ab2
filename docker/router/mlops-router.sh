#!/bin/sh
# mlops-router: one gRPC entry point for the four mlops services, so that a single `--server`
# works from outside a cluster or a compose network. Debian's nginx passes each call to the service
# that owns its package (grpc_pass by the path /<package>.<Service>/<Method>); nothing is written by
# hand but this configuration. Settings (environment):
#   MLOPS_METADATA_ADDRESS, MLOPS_ARTIFACT_ADDRESS, MLOPS_SCHEDULER_ADDRESS,
#   MLOPS_MONITORING_ADDRESS    host:port of each service (default metadata:50051, ...); the
#                               all-in-one server is all four
#   MLOPS_ROUTER_PORT           the gRPC port (default 50051)
#   MLOPS_ROUTER_HEALTH_PORT    plain HTTP /healthz for probes (default 8080)
#   MLOPS_ROUTER_TLS_CERT, MLOPS_ROUTER_TLS_KEY
#                               PEM files: serve TLS (HTTP/2 over TLS) instead of plaintext
#   MLOPS_ROUTER_RESOLVER       a DNS server to look the services up at call time, every 10 s
#                               (compose: 127.0.0.11, whose answers change when a container is
#                               recreated); unset: looked up once at start (Kubernetes Services
#                               keep their address)
#   MLOPS_ROUTER_STREAM_TIMEOUT how long a call may stay silent, e.g. log follows (default 3600s)
#   MLOPS_ROUTER_ACCESS_LOG     1: one line per call on stdout
#   MLOPS_ROUTER_CONFIG_ONLY    1: print the configuration and exit
# The configuration is written to /tmp (the root filesystem may be read-only). With arguments, runs
# them instead (e.g. `docker run mlops/router:dev nginx -V`).
set -eu
if [ "$#" -gt 0 ]; then exec "$@"; fi
port="${MLOPS_ROUTER_PORT:-50051}"
health_port="${MLOPS_ROUTER_HEALTH_PORT:-8080}"
timeout="${MLOPS_ROUTER_STREAM_TIMEOUT:-3600s}"
run="${TMPDIR:-/tmp}/mlops-router"
mkdir -p "$run"
conf="$run/nginx.conf"

listen="listen $port http2;"
tls=""
if [ -n "${MLOPS_ROUTER_TLS_CERT:-}" ] || [ -n "${MLOPS_ROUTER_TLS_KEY:-}" ]; then
  for f in "${MLOPS_ROUTER_TLS_CERT:-}" "${MLOPS_ROUTER_TLS_KEY:-}"; do
    [ -r "$f" ] || { echo "mlops-router: TLS needs both MLOPS_ROUTER_TLS_CERT and _KEY, readable: '$f'" >&2; exit 2; }
  done
  listen="listen $port ssl http2;"
  tls="ssl_certificate $MLOPS_ROUTER_TLS_CERT;
    ssl_certificate_key $MLOPS_ROUTER_TLS_KEY;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:tls:10m;"
fi
access="access_log off;"
if [ "${MLOPS_ROUTER_ACCESS_LOG:-0}" = 1 ]; then
  access='log_format grpc escape=json
      '"'"'{"time":"$time_iso8601","client":"$remote_addr","method":"$uri","status":$status,'"'"'
      '"'"'"grpc_status":"$sent_trailer_grpc_status","request_bytes":$request_length,'"'"'
      '"'"'"response_bytes":$bytes_sent,"seconds":$request_time}'"'"';
    access_log /dev/stdout grpc;'
fi

upstreams=""
locations=""
for service in metadata artifact scheduler monitoring; do
  upper=$(echo "$service" | tr a-z A-Z)
  address=$(eval echo "\${MLOPS_${upper}_ADDRESS:-$service:50051}")
  if [ -n "${MLOPS_ROUTER_RESOLVER:-}" ]; then
    # A variable in grpc_pass makes nginx resolve the name per call (cached for valid=).
    locations="$locations
    location /mlops.$service.v1. { set \$$service $address; grpc_pass grpc://\$$service; }"
    health="set \$health ${MLOPS_METADATA_ADDRESS:-metadata:50051}; grpc_pass grpc://\$health;"
  else
    upstreams="$upstreams
  upstream $service {
    server $address;
    keepalive 32;
  }"
    locations="$locations
    location /mlops.$service.v1. { grpc_pass grpc://$service; }"
    health="grpc_pass grpc://metadata;"
  fi
done
resolver=""
[ -z "${MLOPS_ROUTER_RESOLVER:-}" ] || resolver="resolver $MLOPS_ROUTER_RESOLVER valid=10s ipv6=off;"

cat > "$conf" <<EOT
# Written by mlops-router at start; see /usr/local/bin/mlops-router.
worker_processes auto;
pid $run/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  $access
  client_body_temp_path $run/body;
  proxy_temp_path $run/proxy;
  fastcgi_temp_path $run/fastcgi;
  uwsgi_temp_path $run/uwsgi;
  scgi_temp_path $run/scgi;
  # Uploads stream through unbuffered, of any size; calls may stay open as long as a log follow.
  client_max_body_size 0;
  client_body_timeout $timeout;
  keepalive_timeout $timeout;
  grpc_read_timeout $timeout;
  grpc_send_timeout $timeout;
  grpc_socket_keepalive on;
  # A service's pod replaced: until kube-proxy drops the old endpoint a new connection may go to
  # an address that no longer answers. Fail that call in seconds (UNAVAILABLE, clients retry)
  # instead of nginx's default 60 s (measured: recovery through the router 61 s once in five).
  grpc_connect_timeout 3s;
  # Downloads relay in 256 KiB reads instead of one page (mlops-bench router: download through
  # the router 0.56-0.61 of direct with the default, see docs/performance.md). Allocated per call
  # in flight.
  grpc_buffer_size 256k;
  server_tokens off;
  $resolver
$upstreams

  server {
    $listen
    $tls
$locations
    # The standard health service: answered by the metadata service (every service serves it).
    location /grpc.health.v1.Health/ { $health }
    # The audit log: every server keeps its own; through the router, the metadata service's (all
    # of it for the all-in-one server). docs/security.md, "The audit log".
    location /mlops.audit.v1. { $health }
    # Anything else: UNIMPLEMENTED, as a gRPC server says it (a trailers-only response).
    location / {
      default_type application/grpc;
      add_header grpc-status 12 always;
      add_header grpc-message "mlops-router: no mlops service serves this method" always;
      return 200;
    }
  }

  server {
    listen $health_port;
    location = /healthz { default_type text/plain; return 200 "ok\n"; }
    location = /stub_status { stub_status; }
    location / { return 404; }
  }
}
EOT
if [ "${MLOPS_ROUTER_CONFIG_ONLY:-0}" = 1 ]; then
  cat "$conf"
  exit 0
fi
exec nginx -c "$conf" -e stderr -g 'daemon off;'
