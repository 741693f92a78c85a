#!/usr/bin/env bash
# run-cluster.sh: the whole Switchboard cluster on one machine, on loopback.
#
#   deploy/local/run-cluster.sh start     3 nats-server + 3 gateways + haproxy; waits until ready
#   deploy/local/run-cluster.sh status    what runs, with readiness; exit 0 only if all is up
#   deploy/local/run-cluster.sh stop      stops exactly the processes start started
#   deploy/local/run-cluster.sh clean     stop, then delete JetStream data, logs and secrets
#   deploy/local/run-cluster.sh stop-node  nats|gateway|lb I   stop one process (fault drills)
#   deploy/local/run-cluster.sh start-node nats|gateway|lb I   start it again and wait until ready
#
# It uses the same configuration files as docker-compose and Kubernetes:
# deploy/nats/nats.conf (+ accounts.conf), deploy/gateway/cluster.yaml and
# deploy/lb/haproxy.cfg, filled in through environment variables.
#
# Installs what is missing: nats-server at the version in go.mod (go install,
# into the state dir), haproxy (apt-get, only when run as root; otherwise the
# cluster runs without a load balancer and says so). Builds the gateway and
# agent from this checkout.
#
# Environment:
#   SB_BASE_PORT      first port of the block used (default 14000; uses BASE+1 .. BASE+81)
#   SB_STATE_DIR      pids, logs, data, binaries (default deploy/local/.state, gitignored)
#   SB_WAIT_SECONDS   bound on every readiness wait (default 120)
#   SB_NO_LB=1        do not start haproxy
#   SB_AGENT_TARGET   if set (http://host:port), also start `agent upstream --name demo
#                     --target $SB_AGENT_TARGET` as the NATS user agent-demo
#   SB_TLS=1          TLS variant: a private CA (openssl, in $SB_STATE_DIR/tls) signs
#                     certificates for the NATS nodes, the gateways and the agent; NATS
#                     clients need TLS and a client certificate (mTLS, tls:// URLs), the
#                     gateways serve HTTPS (HTTP/2); haproxy serves HTTPS too (HTTP/2) and
#                     re-encrypts to the gateways, verifying them against the CA.
#                     Probe with: curl --cacert $SB_STATE_DIR/tls/ca.pem https://...
#                     Give status, start-node and stop-node the same SB_TLS.
#
# After start, $SB_STATE_DIR/cluster.env holds SB_LB_URL, SB_GATEWAY_URLS,
# SB_NATS_URLS, SB_NATS_MONITOR_URLS and the NATS users' credentials, for
# scripts and tests to source. Ports (I = 1..3):
#   NATS client BASE+I, route BASE+10+I, monitoring BASE+20+I,
#   WebSocket BASE+30+I, leafnode BASE+40+I; gateway I BASE+50+I;
#   haproxy BASE+80, haproxy stats/metrics BASE+81.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEPLOY=$ROOT/deploy
STATE=${SB_STATE_DIR:-$DEPLOY/local/.state}
BASE=${SB_BASE_PORT:-14000}
WAIT=${SB_WAIT_SECONDS:-120}
HOST=127.0.0.1
export PATH="$PATH:/usr/local/go/bin"

log() { printf 'run-cluster: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

case $BASE in '' | *[!0-9]*) die "SB_BASE_PORT must be a number, got '$BASE'" ;; esac
case $WAIT in '' | *[!0-9]*) die "SB_WAIT_SECONDS must be a number, got '$WAIT'" ;; esac
((BASE >= 1024 && BASE + 81 <= 65535)) || die "SB_BASE_PORT must be in 1024..65454"

nats_port() { echo $((BASE + $1)); }
route_port() { echo $((BASE + 10 + $1)); }
mon_port() { echo $((BASE + 20 + $1)); }
ws_port() { echo $((BASE + 30 + $1)); }
leaf_port() { echo $((BASE + 40 + $1)); }
gw_port() { echo $((BASE + 50 + $1)); }
LB_PORT=$((BASE + 80))
LB_STATS_PORT=$((BASE + 81))

BIN=$STATE/bin
RUN=$STATE/run
LOGS=$STATE/log
DATA=$STATE/data
SECRETS=$STATE/secrets.env
TLSDIR=$STATE/tls
TLS=${SB_TLS:-0}
[[ $TLS == 0 || $TLS == 1 ]] || die "SB_TLS must be 0 or 1, got '$TLS'"
SCHEME=http
((TLS)) && SCHEME=https

# --- processes -------------------------------------------------------------

# pid files hold "PID EXE": stop and status only touch a PID whose
# executable is still EXE, so a recycled pid is never signalled.
pidfile() { echo "$RUN/$1.pid"; }

alive() { # name -> 0 if the recorded process runs
  local f pid exe
  f=$(pidfile "$1")
  [[ -f $f ]] || return 1
  read -r pid exe <"$f" || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -d /proc/$pid ]]; then
    # Linux: the executable must still be ours; a zombie has none.
    local real
    real=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    [[ $real == "$exe" || $real == "$exe (deleted)" ]] || return 1
  fi
  return 0
}

recorded_pid() { local pid exe; read -r pid exe <"$(pidfile "$1")"; echo "$pid"; }

spawn() { # name exe args... (environment prepared by the caller)
  local name=$1 exe=$2
  shift 2
  mkdir -p "$RUN" "$LOGS"
  # 9>&-: the lock fd must not outlive this invocation in the daemons.
  nohup "$exe" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 9>&- &
  local pid=$! real
  real=$(readlink -f "$exe")
  echo "$pid $real" >"$(pidfile "$name")"
  # Until nohup has exec'd the binary, /proc/PID/exe is still the shell and
  # alive() would not recognise the process: wait for the exec (bounded).
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -e /proc/$pid/exe ]] || return 0
    [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$real" ]] && return 0
    sleep 0.05
  done
  log "$name (pid $pid) did not exec $real"
  return 1
}

stop_procs() { # bound names... : TERM all, wait up to bound seconds, then KILL
  local bound=$1 name pid deadline left
  shift
  local running=()
  for name in "$@"; do
    if alive "$name"; then
      pid=$(recorded_pid "$name")
      kill -TERM "$pid" 2>/dev/null || true
      running+=("$name")
      log "stopping $name (pid $pid)"
    fi
  done
  deadline=$((SECONDS + bound))
  while ((SECONDS < deadline)); do
    left=()
    for name in "${running[@]+"${running[@]}"}"; do
      if alive "$name"; then left+=("$name"); fi
    done
    ((${#left[@]} == 0)) && break
    sleep 0.2
  done
  for name in "$@"; do
    if alive "$name"; then
      log "$name did not stop within ${bound}s, killing it"
      kill -KILL "$(recorded_pid "$name")" 2>/dev/null || true
    fi
    rm -f "$(pidfile "$name")"
  done
}

# --- probes ----------------------------------------------------------------

# http_status host port path -> HTTP status code, or 000 when nothing answers.
http_status() {
  local line
  if [[ ${4:-} == https ]]; then
    curl -s -o /dev/null -m 3 -w '%{http_code}' --cacert "$TLSDIR/ca.pem" "https://$1:$2$3" 2>/dev/null || echo 000
    return 0
  fi
  line=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$2" "$0" >&3
    head -n1 <&3' "$1" "$2" "$3" 2>/dev/null) || true
  set -- $line
  echo "${2:-000}"
}

port_busy() { timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null; }

# wait_ready name port path [scheme]: polls until 200, at most WAIT seconds;
# fails at once if the process died.
wait_ready() {
  local name=$1 port=$2 path=$3 scheme=${4:-http} deadline=$((SECONDS + WAIT)) code=000
  while ((SECONDS < deadline)); do
    if ! alive "$name"; then
      log "$name exited; last log lines:"
      tail -n 20 "$LOGS/$name.log" >&2 || true
      return 1
    fi
    code=$(http_status "$HOST" "$port" "$path" "$scheme")
    [[ $code == 200 ]] && return 0
    sleep 0.3
  done
  log "$name: $scheme://$HOST:$port$path still answers $code after ${WAIT}s; see $LOGS/$name.log"
  return 1
}

# wait_log name text: polls the process log for text, at most WAIT seconds.
wait_log() {
  local name=$1 text=$2 deadline=$((SECONDS + WAIT))
  while ((SECONDS < deadline)); do
    if ! alive "$name"; then
      log "$name exited; last log lines:"
      tail -n 20 "$LOGS/$name.log" >&2 || true
      return 1
    fi
    grep -qF -- "$text" "$LOGS/$name.log" 2>/dev/null && return 0
    sleep 0.3
  done
  log "$name: no '$text' in its log after ${WAIT}s; see $LOGS/$name.log"
  return 1
}

# --- installation ----------------------------------------------------------

nats_version() { awk '$1 == "github.com/nats-io/nats-server/v2" { print $2 }' "$ROOT/go.mod"; }

ensure_go() {
  command -v go >/dev/null 2>&1 || die "go is required (https://go.dev/dl); not found in PATH"
}

ensure_nats_server() {
  local want have=""
  want=$(nats_version)
  [[ -n $want ]] || die "no github.com/nats-io/nats-server/v2 in go.mod"
  if [[ -x $BIN/nats-server ]]; then
    have=$("$BIN/nats-server" --version 2>/dev/null | awk '{ print $NF }')
  fi
  if [[ $have != "$want" ]]; then
    log "installing nats-server $want (go install)"
    GOBIN=$BIN go install "github.com/nats-io/nats-server/v2@$want"
  fi
}

ensure_haproxy() { # -> 0 when haproxy is usable
  [[ ${SB_NO_LB:-} == 1 ]] && return 1
  command -v haproxy >/dev/null 2>&1 && return 0
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing haproxy (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq haproxy >/dev/null; then
      apt-get update -qq && apt-get install -y -qq haproxy >/dev/null
    fi
    command -v haproxy >/dev/null 2>&1 && return 0
  fi
  log "haproxy not found and cannot be installed here (needs root + apt-get): running without a load balancer"
  return 1
}

build() {
  log "building gateway and agent"
  (cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN/gateway" ./cmd/gateway && CGO_ENABLED=0 go build -o "$BIN/agent" ./cmd/agent)
}

ensure_secrets() {
  [[ -f $SECRETS ]] && return 0
  mkdir -p "$STATE"
  local v
  (
    umask 077
    for v in NATS_ROUTE_PASSWORD SB_GATEWAY_PASSWORD SB_SYS_PASSWORD SB_AGENT_DEMO_PASSWORD; do
      # Letters and digits starting with a letter: a plain word for the
      # nats-server config parser.
      echo "$v=pw$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    done >"$SECRETS"
  )
}

# ensure_tls: with SB_TLS=1, a private CA and its certificates, made once.
ensure_tls() {
  ((TLS)) || return 0
  if [[ -f $TLSDIR/agent.pem ]]; then
    tls_lb_pem
    return 0
  fi
  command -v openssl >/dev/null 2>&1 || die "SB_TLS=1 needs openssl"
  log "making a private CA and certificates in $TLSDIR (openssl)"
  mkdir -p "$TLSDIR"
  (
    umask 077
    cd "$TLSDIR"
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    openssl req -x509 "${ec[@]}" -days 365 -subj "/CN=Switchboard local CA" -keyout ca.key -out ca.pem 2>/dev/null
    issue() { # name subject-alt-names extended-key-usage
      openssl req "${ec[@]}" -subj "/CN=$1" -keyout "$1.key" -out "$1.csr" 2>/dev/null
      printf '%s\nextendedKeyUsage=%s\n' "$2" "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 \
        -extfile "$1.ext" -out "$1.pem" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    # One server certificate for the NATS nodes and the gateways (all on
    # $HOST); it is also their client certificate towards NATS.
    issue server "subjectAltName=IP:$HOST,DNS:localhost" serverAuth,clientAuth
    issue agent "subjectAltName=DNS:agent-demo" clientAuth
  ) || die "making certificates failed"
  tls_lb_pem
}

# tls_lb_pem: haproxy wants the certificate and its key in one file.
tls_lb_pem() {
  [[ -f $TLSDIR/lb.pem ]] && return 0
  (umask 077 && cat "$TLSDIR/server.pem" "$TLSDIR/server.key" >"$TLSDIR/lb.pem") || die "writing $TLSDIR/lb.pem failed"
}

# --- components ------------------------------------------------------------

nats_urls() { # first -> comma-separated client URLs, node `first` first
  local i urls=() first=${1:-1}
  local scheme=nats
  ((TLS)) && scheme=tls
  for i in 0 1 2; do urls+=("$scheme://$HOST:$(nats_port $(((first - 1 + i) % 3 + 1)))"); done
  (IFS=,; echo "${urls[*]}")
}

start_nats() { # i
  local i=$1 routes tls=()
  # TLS variant: the client port requires TLS and a client certificate of
  # the CA (flags override deploy/nats/nats.conf; routes stay on loopback).
  ((TLS)) && tls=(--tls --tlscert "$TLSDIR/server.pem" --tlskey "$TLSDIR/server.key" --tlscacert "$TLSDIR/ca.pem" --tlsverify)
  routes="[nats-route://route:$NATS_ROUTE_PASSWORD@$HOST:$(route_port 1), nats-route://route:$NATS_ROUTE_PASSWORD@$HOST:$(route_port 2), nats-route://route:$NATS_ROUTE_PASSWORD@$HOST:$(route_port 3)]"
  mkdir -p "$DATA/nats-$i"
  NATS_SERVER_NAME=n$i NATS_HOST=$HOST NATS_CLIENT_PORT=$(nats_port "$i") \
    NATS_HTTP_PORT=$(mon_port "$i") NATS_CLUSTER_PORT=$(route_port "$i") \
    NATS_WS_PORT=$(ws_port "$i") NATS_LEAF_PORT=$(leaf_port "$i") NATS_ROUTES=$routes \
    NATS_STORE_DIR=$DATA/nats-$i NATS_PID_FILE=$RUN/nats-$i.server.pid \
    NATS_ROUTE_PASSWORD=$NATS_ROUTE_PASSWORD SB_GATEWAY_PASSWORD=$SB_GATEWAY_PASSWORD \
    SB_SYS_PASSWORD=$SB_SYS_PASSWORD SB_AGENT_DEMO_PASSWORD=$SB_AGENT_DEMO_PASSWORD \
    spawn "nats-$i" "$BIN/nats-server" -c "$DEPLOY/nats/nats.conf" "${tls[@]+"${tls[@]}"}"
}

# tls_export prefix name: with SB_TLS=1, exports the NATS client TLS
# variables of a binary (prefix SWITCHBOARD or SWITCHBOARD_AGENT) presenting
# certificate name, and the gateway's HTTPS certificate. Call in a subshell.
tls_export() {
  ((TLS)) || return 0
  export "$1_NATS_TLS_CA_FILE=$TLSDIR/ca.pem" "$1_NATS_TLS_CERT_FILE=$TLSDIR/$2.pem" "$1_NATS_TLS_KEY_FILE=$TLSDIR/$2.key"
  if [[ $1 == SWITCHBOARD ]]; then
    export "SWITCHBOARD_TLS_CERT_FILE=$TLSDIR/server.pem" "SWITCHBOARD_TLS_KEY_FILE=$TLSDIR/server.key"
  fi
}

start_gateway() { # i
  local i=$1
  (
  tls_export SWITCHBOARD server
  SWITCHBOARD_NATS_URL=$(nats_urls "$i") SWITCHBOARD_NATS_USER=gateway \
    SWITCHBOARD_NATS_PASSWORD=$SB_GATEWAY_PASSWORD SWITCHBOARD_DATA_DIR=$DATA/gateway-$i \
    spawn "gateway-$i" "$BIN/gateway" --config "$DEPLOY/gateway/cluster.yaml" \
    --listen "$HOST:$(gw_port "$i")"
  )
}

start_lb() {
  local bind_opts="" server_opts=""
  # TLS variant: HTTPS (HTTP/2) in front, re-encrypted to the gateways,
  # whose certificates must verify against the CA (health checks too).
  if ((TLS)); then
    bind_opts="ssl crt $TLSDIR/lb.pem alpn h2,http/1.1"
    server_opts="ssl verify required ca-file $TLSDIR/ca.pem"
  fi
  SB_LB_BIND_OPTS=$bind_opts SB_GW_SERVER_OPTS=$server_opts SB_LB_BIND=$HOST:$LB_PORT SB_LB_STATS=$HOST:$LB_STATS_PORT \
    SB_GW1_ADDR=$HOST:$(gw_port 1) SB_GW2_ADDR=$HOST:$(gw_port 2) SB_GW3_ADDR=$HOST:$(gw_port 3) \
    spawn lb "$(command -v haproxy)" -db -f "$DEPLOY/lb/haproxy.cfg"
}

start_agent() {
  (
  tls_export SWITCHBOARD_AGENT agent
  SWITCHBOARD_AGENT_NATS_URL=$(nats_urls 1) SWITCHBOARD_AGENT_NATS_USER=agent-demo \
    SWITCHBOARD_AGENT_NATS_PASSWORD=$SB_AGENT_DEMO_PASSWORD \
    spawn agent-1 "$BIN/agent" upstream --name demo --target "$SB_AGENT_TARGET"
  )
}

start_one() { # kind i : start and wait until ready
  local kind=$1 i=$2 name=$1-$2
  [[ $kind == lb ]] && name=lb
  alive "$name" && { log "$name already runs"; return 0; }
  case $kind in
  nats) start_nats "$i" && wait_ready "nats-$i" "$(mon_port "$i")" /healthz ;;
  gateway) start_gateway "$i" && wait_ready "gateway-$i" "$(gw_port "$i")" /readyz "$SCHEME" ;;
  lb) start_lb && wait_ready lb "$LB_PORT" /readyz "$SCHEME" ;;
  *) die "unknown component '$kind' (nats, gateway, lb)" ;;
  esac
}

all_names() { echo lb agent-1 gateway-1 gateway-2 gateway-3 nats-1 nats-2 nats-3; }

write_cluster_env() {
  local lb_url=""
  alive lb && lb_url="$SCHEME://$HOST:$LB_PORT"
  {
    echo "SB_LB_URL=$lb_url"
    echo "SB_GATEWAY_URLS=$SCHEME://$HOST:$(gw_port 1),$SCHEME://$HOST:$(gw_port 2),$SCHEME://$HOST:$(gw_port 3)"
    ((TLS)) && echo "SB_TLS_CA=$TLSDIR/ca.pem"
    echo "SB_NATS_URLS=$(nats_urls 1)"
    echo "SB_NATS_WS_URLS=ws://$HOST:$(ws_port 1),ws://$HOST:$(ws_port 2),ws://$HOST:$(ws_port 3)"
    echo "SB_NATS_LEAF_URLS=nats-leaf://$HOST:$(leaf_port 1),nats-leaf://$HOST:$(leaf_port 2),nats-leaf://$HOST:$(leaf_port 3)"
    echo "SB_NATS_MONITOR_URLS=http://$HOST:$(mon_port 1),http://$HOST:$(mon_port 2),http://$HOST:$(mon_port 3)"
    echo "SB_LB_STATS_URL=$([[ -n $lb_url ]] && echo "http://$HOST:$LB_STATS_PORT")"
    sed 's/^/SB_SECRET_/' "$SECRETS"
  } >"$STATE/cluster.env"
  chmod 600 "$STATE/cluster.env"
}

print_urls() {
  local i
  echo "Switchboard cluster is ready."
  if alive lb; then
    echo "  load balancer   $SCHEME://$HOST:$LB_PORT        (stats and /metrics: http://$HOST:$LB_STATS_PORT)"
  else
    echo "  load balancer   none (haproxy not available)"
  fi
  for i in 1 2 3; do echo "  gateway $i       $SCHEME://$HOST:$(gw_port "$i")"; done
  ((TLS)) && echo "  TLS             CA $TLSDIR/ca.pem; NATS needs tls:// and a client certificate ($TLSDIR/agent.pem)"
  for i in 1 2 3; do
    echo "  nats $i          $( ((TLS)) && echo tls || echo nats)://$HOST:$(nats_port "$i")  ws://$HOST:$(ws_port "$i")  leaf :$(leaf_port "$i")  monitor http://$HOST:$(mon_port "$i")"
  done
  echo "  NATS users      gateway, agent-demo (upstream demo), sys: passwords in $SECRETS"
  echo "  logs            $LOGS"
  echo "  for scripts     . $STATE/cluster.env"
  echo "Stop with: $0 stop"
}

# --- commands --------------------------------------------------------------

cmd_start() {
  local name i p
  for name in $(all_names); do
    alive "$name" && die "already running ($name); use '$0 status' or '$0 stop'"
  done
  for p in 1 2 3 11 12 13 21 22 23 31 32 33 41 42 43 51 52 53 80 81; do
    port_busy $((BASE + p)) && die "port $((BASE + p)) is in use; choose another SB_BASE_PORT"
  done
  ensure_go
  mkdir -p "$BIN" "$RUN" "$LOGS" "$DATA"
  ensure_nats_server
  local with_lb=0
  ensure_haproxy && with_lb=1
  build
  ensure_secrets
  ensure_tls
  set -a
  . "$SECRETS"
  set +a
  trap 'trap - ERR; log "start failed; stopping what was started"; cmd_stop || true' ERR
  for i in 1 2 3; do start_nats "$i"; done
  for i in 1 2 3; do wait_ready "nats-$i" "$(mon_port "$i")" /healthz; done
  log "nats cluster ready"
  for i in 1 2 3; do start_gateway "$i"; done
  for i in 1 2 3; do wait_ready "gateway-$i" "$(gw_port "$i")" /readyz "$SCHEME"; done
  log "gateways ready"
  if ((with_lb)); then
    start_lb
    wait_ready lb "$LB_PORT" /readyz "$SCHEME"
    log "load balancer ready"
  fi
  if [[ -n ${SB_AGENT_TARGET:-} ]]; then
    start_agent
    wait_log agent-1 "nats connected"
  fi
  trap - ERR
  write_cluster_env
  print_urls
}

cmd_stop() {
  # Reverse order: nothing new reaches gateways, gateways end their streams
  # and drain (shutdown.grace 15s), then NATS stops.
  stop_procs 10 lb agent-1
  stop_procs 25 gateway-1 gateway-2 gateway-3
  stop_procs 20 nats-1 nats-2 nats-3
  rm -f "$STATE/cluster.env" "$RUN"/nats-*.server.pid
  log "stopped"
}

cmd_status() {
  local name up=0 down=0 code
  for name in nats-1 nats-2 nats-3 gateway-1 gateway-2 gateway-3 lb agent-1; do
    code=""
    case $name in
    nats-*) code=$(http_status "$HOST" "$(mon_port "${name#nats-}")" /healthz) ;;
    gateway-*) code=$(http_status "$HOST" "$(gw_port "${name#gateway-}")" /readyz "$SCHEME") ;;
    lb) code=$(http_status "$HOST" "$LB_PORT" /readyz "$SCHEME") ;;
    esac
    if alive "$name"; then
      printf '%-10s running  pid %-8s %s\n' "$name" "$(recorded_pid "$name")" "${code:+ready=$code}"
      if [[ -z $code || $code == 200 ]]; then up=$((up + 1)); else down=$((down + 1)); fi
    elif [[ $name == lb || $name == agent-1 ]]; then
      printf '%-10s not running\n' "$name"
    else
      printf '%-10s stopped\n' "$name"
      down=$((down + 1))
    fi
  done
  ((down == 0 && up > 0))
}

cmd_clean() {
  cmd_stop
  rm -rf "$DATA" "$LOGS" "$RUN" "$SECRETS" "$STATE/cluster.env" "$TLSDIR"
  log "removed data, logs and secrets (binaries kept in $BIN)"
}

node_args() { # kind i
  [[ ${1:-} =~ ^(nats|gateway|lb)$ ]] || die "usage: $0 stop-node|start-node nats|gateway|lb I"
  [[ $1 == lb || ${2:-} =~ ^[123]$ ]] || die "node number must be 1, 2 or 3"
}

# lock serialises invocations: two concurrent starts or a stop racing a
# start would each see a half-written state.
lock() {
  mkdir -p "$STATE"
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>"$STATE/.lock"
  flock -w "$WAIT" 9 || die "another run-cluster.sh holds $STATE/.lock"
}

main() {
  local cmd=${1:-}
  [[ $cmd =~ ^(start|stop|clean|stop-node|start-node)$ ]] && lock
  case $cmd in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  clean) cmd_clean ;;
  stop-node)
    node_args "${2:-}" "${3:-}"
    if [[ $2 == lb ]]; then stop_procs 10 lb; else stop_procs 25 "$2-$3"; fi
    ;;
  start-node)
    node_args "${2:-}" "${3:-}"
    [[ -f $SECRETS ]] || die "no secrets yet; run '$0 start' first"
    set -a
    . "$SECRETS"
    set +a
    if [[ $2 == lb ]]; then start_one lb 1; else start_one "$2" "$3"; fi
    ;;
  *)
    sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
  esac
}

main "$@"
