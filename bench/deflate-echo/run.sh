#!/usr/bin/env bash
# The compressed echo benchmark: ferrule's echo server against Node `ws` and Python `websockets`,
# each with permessage-deflate at its own defaults, under one load generator (deflate-loadgen).
# Servers run in turn within each round, pinned to CPU 0; the generator runs on CPU 1. Figures
# hold only as ratios from one run.
#
#   bench/deflate-echo/run.sh [--rounds 3] [--secs 3] [--conns 1,100] [--sizes 1024,16384]
#                             [--depth 1] [--idle 10000] [--client-context] [--outdir DIR]
# --client-context: the generator keeps its compression context (offers no
# client_no_context_takeover), as browsers do, so servers keep a decompressor per connection.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

rounds=3 secs=3 conns=1,100 sizes=1024,16384 depth=1 idle=0 extra=() outdir="$(mktemp -d /tmp/deflate-echo-XXXXXX)"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;; --secs) secs="$2"; shift 2 ;; --conns) conns="$2"; shift 2 ;;
    --sizes) sizes="$2"; shift 2 ;; --depth) depth="$2"; shift 2 ;; --idle) idle="$2"; shift 2 ;;
    --outdir) outdir="$2"; mkdir -p "$outdir"; shift 2 ;;
    --client-context) extra+=(--client-context); shift ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
done
peers="${PEERS_DIR:-/tmp/deflate-echo-peers}"
mkdir -p "$peers"
if [[ ! -d "$peers/node_modules/ws" ]]; then (cd "$peers" && npm install --silent --no-save ws@8 >/dev/null); fi
if [[ ! -x "$peers/venv/bin/python" ]] || ! "$peers/venv/bin/python" -c 'import websockets' 2>/dev/null; then
  python3 -m venv "$peers/venv" && "$peers/venv/bin/pip" install --quiet 'websockets>=14'
fi
# Both binaries with fat LTO and one codegen unit, as the workspace's release-lto profile.
(cd "$here" && CARGO_TARGET_DIR=/tmp/deflate-bench-target cargo build --quiet --release)
gen=/tmp/deflate-bench-target/release/deflate-loadgen
cp /tmp/deflate-bench-target/release/ferrule-echo "$outdir/ferrule-echo"
declare -A cmd=(
  [ferrule]="$outdir/ferrule-echo 127.0.0.1:{port}"
  [node-ws]="env NODE_PATH=$peers/node_modules node $here/servers/echo-ws.js {port}"
  [python-websockets]="$peers/venv/bin/python $here/servers/echo_websockets.py {port}"
)
order=(ferrule node-ws python-websockets)
ulimit -n 65536 2>/dev/null || true
port=21000
run_one() { # name args... -> one result line
  local name="$1"; shift
  port=$((port + 1))
  local c="${cmd[$name]//\{port\}/$port}"
  taskset -c 0 bash -c "exec $c" >"$outdir/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
  local out
  out=$(taskset -c 1 "$gen" --port "$port" --server-pid "$pid" "${extra[@]}" "$@" 2>&1) || out="FAILED $out"
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  echo "$name $out"
}
raw="$outdir/raw.txt"; : >"$raw"
if [[ "$idle" != 0 ]]; then
  for name in "${order[@]}"; do run_one "$name" --idle -c "$idle" -s 1024 | tee -a "$raw"; done
else
  for r in $(seq "$rounds"); do
    for c in ${conns//,/ }; do for s in ${sizes//,/ }; do for name in "${order[@]}"; do
      run_one "$name" -c "$c" -s "$s" -d "$depth" -t "$secs" -w 1 | sed "s/^/round=$r /" | tee -a "$raw"
    done; done; done
  done
fi
echo "raw results: $raw"
