#!/usr/bin/env bash
# The second-hop token exchange under load, against the embedded default
# (memory store) on loopback: wrk -t2 -c32 for DURATION (default 10s).
# Usage: bench/hop_exchange.sh [path/to/xaa-broker]   (default: a release
# build of this checkout). Needs wrk, curl and jq. Stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/xaa-broker}
[ -x "$BIN" ] || cargo build --release
PORT=${PORT:-18480}
B=http://127.0.0.1:$PORT
"$BIN" serve --dev --listen 127.0.0.1:$PORT >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf $B/healthz >/dev/null && break; sleep 0.1; done
ID_TOKEN=$(curl -s $B/dev/idp/id-token -d user=alice -d client_id=triage-agent | jq -r .id_token)
export HOP1=$(curl -s -u triage-agent:triage-agent-secret $B/token \
  -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange -d resource=https://mcp.logs.example.com \
  -d subject_token=$ID_TOKEN -d subject_token_type=urn:ietf:params:oauth:token-type:id_token | jq -r .access_token)
export BASIC=$(printf 'mcp-logs:mcp-logs-secret' | base64 -w0)
curl -s -H "Authorization: Basic $BASIC" $B/token -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
  -d resource=https://cost.example.com -d subject_token_type=urn:ietf:params:oauth:token-type:access_token \
  -d subject_token=$HOP1 | jq -e .access_token >/dev/null
wrk -t2 -c32 -d"${DURATION:-10s}" -s bench/hop_exchange.lua $B/token
