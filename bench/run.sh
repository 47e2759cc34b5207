#!/usr/bin/env bash
# The published benchmark (BENCHMARKS.md): every hot endpoint under
# `wrk -t2 -c32` for DURATION seconds each, on loopback, for each store
# mode (memory, then Redis on a redis-server of its own), plus the ES256
# crypto ceiling of this machine from `openssl speed`. One table on stdout,
# the same as Markdown in $OUT.
#
#   bash bench/run.sh [path/to/xaa-broker]    # default: cargo build --release
#
# Environment: DURATION (seconds per scenario, default 8), MODES (default
# "memory redis"), SCENARIOS (default all: "issue fresh fanout redeem
# introspect trace fixed"; fixed needs fresh, for its peak), OUT
# (default target/bench/results.md; a .tsv is written next to it). Every
# port is a free one picked at start. Needs wrk, curl, jq,
# python3, openssl, and redis-server for the Redis mode. About 2.5 minutes
# with the default DURATION; stops by itself and removes what it started.
#
# What runs: a helper `serve --dev` (memory) used only as the dev IdP, and
# per mode broker A and resource AS B from the embedded configuration
# (src/dev/embedded*.toml) written to files, the store set to the mode.
# Why files and not `serve --dev`: dev mode takes no XAA__ overrides, so it
# cannot use Redis, and its resource AS keeps the default per-client limit
# (50/s), which a redemption benchmark would measure instead of the broker.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-8}
DURATION=${DURATION%s}
MODES=${MODES:-memory redis}
SCENARIOS=${SCENARIOS:-issue fresh fanout redeem introspect trace fixed}
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }
OUT=${OUT:-target/bench/results.md}
THREADS=2
CONNS=32
for tool in wrk curl jq python3 openssl; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh: needs $tool" >&2; exit 1; }
done

if [ $# -ge 1 ]; then
  BIN=$1
else
  echo "building release ..." >&2
  cargo build --release --bin xaa-broker >&2
  BIN=${CARGO_TARGET_DIR:-target}/release/xaa-broker
fi
[ -x "$BIN" ] || { echo "bench/run.sh: no binary at $BIN" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_http() { # url
  for _ in $(seq 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done
  echo "bench/run.sh: $1 did not come up" >&2
  return 1
}
jwt_claim() { # token claim
  python3 -c 'import sys,json,base64; p=sys.argv[1].split(".")[1]; p+="="*(-len(p)%4); print(json.loads(base64.urlsafe_b64decode(p))[sys.argv[2]])' "$1" "$2"
}
basic() { printf '%s' "$1" | base64 -w0; }

TE=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange
JB=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer
TT=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type
enc() { python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
AGENT="Basic $(basic triage-agent:triage-agent-secret)"
LOGS="Basic $(basic mcp-logs:mcp-logs-secret)"
SAAS="Basic $(basic triage-agent-at-saas:triage-agent-at-saas-secret)"
AUDITOR="Basic $(basic auditor:auditor-secret)"

# --- the crypto ceiling ------------------------------------------------------
echo "openssl speed -multi 2 -seconds 3 ecdsap256 ..." >&2
read -r SIGN VERIFY < <(openssl speed -multi 2 -seconds 3 ecdsap256 2>/dev/null \
  | awk '/nistp256\)/ && NF >= 4 { s = $(NF-1); v = $NF } END { print s, v }')
# Each exchange verifies one ES256 signature and makes one: the machine spends
# 1/SIGN + 1/VERIFY seconds of its (all-core) crypto capacity per exchange.
CEILING=$(python3 -c "print(round(1/(1/$SIGN + 1/$VERIFY)))")
echo "ES256 sign/s $SIGN, verify/s $VERIFY, ceiling $CEILING exchanges/s" >&2

# --- the dev IdP (a helper dev-mode process; its own A and B are unused) ----
"$BIN" serve --dev --listen 127.0.0.1:0 >"$WORK/idp.out" 2>"$WORK/idp.err" &
PIDS+=($!)
for _ in $(seq 100); do grep -q '^ issuer ' "$WORK/idp.out" 2>/dev/null && break; sleep 0.1; done
IDP=$(awk '/^ issuer /{print $2; exit}' "$WORK/idp.out")
wait_http "$IDP/healthz"

TSV=${OUT%.md}.tsv
mkdir -p "$(dirname "$OUT")"
printf 'scenario\tmode\treq/s\tp50 ms\tp99 ms\terrors\tRSS MiB\tvs ceiling\n' >"$TSV"

run_wrk() { # mode scenario pid url auth bodies [rate] [once]
  local mode=$1 name=$2 pid=$3 url=$4 auth=$5 bodies=$6 rate=${7:-0} once=${8:-0} res rss
  echo "  $mode: $name ..." >&2
  res=$(BENCH_BODIES=$bodies BENCH_AUTH=$auth BENCH_RATE=$rate BENCH_ONCE=$once BENCH_THREADS=$THREADS \
    wrk -t$THREADS -c$CONNS -d"${DURATION}s" -s "$ROOT/bench/wrk.lua" "$url")
  if grep -q EXHAUSTED <<<"$res"; then
    echo "bench/run.sh: $mode $name ran out of single-use tokens; the row is void" >&2
    name="$name (TOKENS EXHAUSTED)"
  fi
  rss=$(awk '/^VmRSS/{printf "%.0f", $2/1024}' "/proc/$pid/status")
  read -r _ rps p50 p99 errs _ < <(grep '^RESULT' <<<"$res")
  LAST_RPS=$rps
  printf '%s\t%s\t%.0f\t%.2f\t%.2f\t%s\t%s\t%.2f\n' "$name" "$mode" "$rps" "$p50" "$p99" "$errs" "$rss" \
    "$(python3 -c "print($rps/$CEILING)")" >>"$TSV"
}
mint() { # url auth bodyfile seconds outfile: wrk answers' access tokens, one per line
  BENCH_BODIES=$3 BENCH_AUTH=$2 BENCH_OUT=$5 BENCH_THREADS=$THREADS \
    wrk -t$THREADS -c$CONNS -d"$4s" -s "$ROOT/bench/wrk.lua" "$1" >/dev/null
  cat "$5".* >"$5"
}

for MODE in $MODES; do
  D=$WORK/$MODE
  mkdir -p "$D"
  PA=$(free_port)
  PB=$(free_port)
  A=http://127.0.0.1:$PA
  B=http://127.0.0.1:$PB
  STORE_A='kind = "memory"'
  STORE_B='kind = "memory"'
  if [ "$MODE" = redis ]; then
    command -v redis-server >/dev/null || { echo "bench/run.sh: needs redis-server" >&2; exit 1; }
    PR=$(free_port)
    mkdir -p "$D/redis"
    # As docker-compose.yml runs it: AOF on, fsync every second.
    redis-server --port "$PR" --bind 127.0.0.1 --dir "$D/redis" --save '' \
      --appendonly yes --appendfsync everysec --maxmemory-policy noeviction >"$D/redis.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do redis-cli -p "$PR" ping >/dev/null 2>&1 && break; sleep 0.1; done
    STORE_A=$(printf 'kind = "redis"\nurl = "redis://127.0.0.1:%s/0"\nprefix = "bench-a:"' "$PR")
    STORE_B=$(printf 'kind = "redis"\nurl = "redis://127.0.0.1:%s/0"\nprefix = "bench-b:"' "$PR")
  fi
  # Broker A: the embedded default, its dev IdP fetched from the helper.
  python3 - "$ROOT/src/dev/embedded.toml" "$A" "$B" "$STORE_A" "$IDP" >"$D/a.toml" <<'EOF'
import sys
text, a, b, store, idp = open(sys.argv[1]).read(), *sys.argv[2:]
text = text.replace('issuer = "http://127.0.0.1:8080"', f'issuer = "{a}"', 1)
text = text.replace('[store]\nkind = "memory"', f'[store]\n{store}', 1)
text = text.replace("http://resource-as.invalid", b)
print(text + f'''
[metrics]
enabled = false

[issuers.dev-idp]
issuer = "{idp}/dev/idp"
jwks_uri = "{idp}/dev/idp/jwks"
trust = ["id_token", "actor"]
algs = ["ES256"]
actor_profile = "agent"
''')
EOF
  # Resource AS B: the embedded one, trusting A, per-client limit raised as
  # in A's embedded default.
  python3 - "$ROOT/src/dev/embedded_ras.toml" "$B" "$STORE_B" "$A" >"$D/b.toml" <<'EOF'
import sys
text, b, store, a = open(sys.argv[1]).read(), *sys.argv[2:]
text = text.replace('issuer = "http://127.0.0.1:8081"', f'issuer = "{b}"', 1)
print(text + f'''
[store]
{store}

[limits]
client_per_second = 100000
client_burst = 100000

[metrics]
enabled = false

[issuers.dev-broker]
issuer = "{a}"
jwks_uri = "{a}/jwks"
trust = ["id_jag"]
algs = ["ES256"]
roles = ["developer", "sre"]
''')
EOF
  env -u XAA_CONFIG "$BIN" serve --config "$D/a.toml" --listen "127.0.0.1:$PA" >"$D/a.log" 2>&1 &
  PID_A=$!
  PIDS+=("$PID_A")
  env -u XAA_CONFIG "$BIN" serve --config "$D/b.toml" --listen "127.0.0.1:$PB" >"$D/b.log" 2>&1 &
  PID_B=$!
  PIDS+=("$PID_B")
  wait_http "$A/healthz" || { cat "$D/a.log" >&2; exit 1; }
  wait_http "$B/healthz" || { cat "$D/b.log" >&2; exit 1; }
  echo "$MODE: A $A (pid $PID_A), B $B (pid $PID_B)" >&2

  # Set-up, each step checked once by hand before it is measured.
  ID_TOKEN=$(curl -sf "$IDP/dev/idp/id-token" -d user=alice -d client_id=triage-agent | jq -r .id_token)
  FIRST_HOP="grant_type=$TE&resource=$(enc https://mcp.logs.example.com)&subject_token_type=$TT%3Aid_token&subject_token=$ID_TOKEN"
  echo "$FIRST_HOP" >"$D/first_hop.body"
  HOP1=$(curl -sf -H "Authorization: $AGENT" "$A/token" -d "$FIRST_HOP" | jq -r .access_token)
  ISSUE="grant_type=$TE&requested_token_type=$TT%3Aid-jag&audience=$(enc "$B")&resource=$(enc https://mcp.saas.example.com/mcp)&subject_token_type=$TT%3Aid_token&subject_token=$ID_TOKEN"
  echo "$ISSUE" >"$D/issue.body"
  JAG=$(curl -sf -H "Authorization: $AGENT" "$A/token" -d "$ISSUE" | jq -r .access_token)
  curl -sf -H "Authorization: $SAAS" "$B/token" -d "grant_type=$JB&assertion=$JAG" | jq -e .access_token >/dev/null
  for aud in https://cost.example.com https://incidents.example.com https://logs-api.example.com; do
    echo "grant_type=$TE&resource=$(enc $aud)&subject_token_type=$TT%3Aaccess_token&subject_token=$HOP1"
  done >"$D/fanout.body"
  while read -r body; do
    curl -sf -H "Authorization: $LOGS" "$A/token" -d "$body" | jq -e .access_token >/dev/null
  done <"$D/fanout.body"
  echo "token=$HOP1" >"$D/introspect.body"
  curl -sf -H "Authorization: $LOGS" "$A/introspect" -d "token=$HOP1" | jq -e '.active == true' >/dev/null
  # A transaction of its own for the trace: one first hop, one second hop.
  ID2=$(curl -sf "$IDP/dev/idp/id-token" -d user=bob -d client_id=triage-agent | jq -r .id_token)
  HOPT=$(curl -sf -H "Authorization: $AGENT" "$A/token" \
    -d "grant_type=$TE&resource=$(enc https://mcp.logs.example.com)&subject_token_type=$TT%3Aid_token&subject_token=$ID2" | jq -r .access_token)
  curl -sf -H "Authorization: $LOGS" "$A/token" -d "$(head -1 "$D/fanout.body" | sed "s/subject_token=.*/subject_token=$HOPT/")" >/dev/null
  TXN=$(jwt_claim "$HOPT" txn)
  echo "txn=$TXN" >"$D/trace.body"
  curl -sf -H "Authorization: $AUDITOR" "$A/audit/trace" -d "txn=$TXN" | jq -e '.records | length >= 2' >/dev/null

  # Pools: the fresh-subject runs use each first-hop token once (a token
  # seen before would be a hit in the verified-signature cache, decisions
  # §24, and the row would measure the fan-out instead): minted for twice
  # the run, the fresh run taking them from the start and the fixed-rate run
  # from the end.
  if want fresh; then
    mint "$A/token" "$AGENT" "$D/first_hop.body" $((DURATION * 2 + 1)) "$D/hops.raw"
    sed "s/^/grant_type=$TE\&resource=$(enc https:\/\/cost.example.com)\&subject_token_type=$TT%3Aaccess_token\&subject_token=/" "$D/hops.raw" >"$D/fresh.body"
    tac "$D/fresh.body" >"$D/fixed.body"
  fi

  want issue && run_wrk "$MODE" "ID-JAG issuance" "$PID_A" "$A/token" "$AGENT" "$D/issue.body"
  PEAK=
  if want fresh; then
    run_wrk "$MODE" "hop exchange, fresh subject (each once)" "$PID_A" "$A/token" "$LOGS" "$D/fresh.body" 0 1
    PEAK=$LAST_RPS
  fi
  want fanout && run_wrk "$MODE" "hop exchange, 1 subject x 3 audiences" "$PID_A" "$A/token" "$LOGS" "$D/fanout.body"
  if want redeem; then
    mint "$A/token" "$AGENT" "$D/issue.body" $((DURATION * 3 / 2 + 1)) "$D/jags.raw"
    sed "s/^/grant_type=$JB\&assertion=/" "$D/jags.raw" >"$D/redeem.body"
    run_wrk "$MODE" "ID-JAG redemption at B" "$PID_B" "$B/token" "$SAAS" "$D/redeem.body" 0 1
  fi
  want introspect && run_wrk "$MODE" "introspection" "$PID_A" "$A/introspect" "$LOGS" "$D/introspect.body"
  want trace && run_wrk "$MODE" "audit trace (1 txn)" "$PID_A" "$A/audit/trace" "$AUDITOR" "$D/trace.body"
  if want fixed && [ -n "$PEAK" ]; then
    RATE=$(python3 -c "print(int($PEAK / 2))")
    run_wrk "$MODE" "hop exchange, fixed rate (peak/2)" "$PID_A" "$A/token" "$LOGS" "$D/fixed.body" "$RATE" 1
  fi

  kill "$PID_A" "$PID_B"
  wait "$PID_A" "$PID_B" 2>/dev/null || true
done

{
  echo "ES256 on this machine (\`openssl speed -multi 2 -seconds 3 ecdsap256\`): $SIGN sign/s, $VERIFY verify/s;"
  echo "ceiling = 1 / (1/sign + 1/verify) = $CEILING exchanges/s. DURATION ${DURATION}s, wrk -t$THREADS -c$CONNS."
  echo
  head -1 "$TSV" | awk -F'\t' '{ s = "|"; for (i = 1; i <= NF; i++) s = s " " $i " |"; print s
    s = "|"; for (i = 1; i <= NF; i++) s = s (i <= 2 ? "---|" : "---:|"); print s }'
  tail -n +2 "$TSV" | awk -F'\t' '{ s = "|"; for (i = 1; i <= NF; i++) s = s " " $i " |"; print s }'
} >"$OUT"
echo >&2
column -t -s $'\t' "$TSV"
echo "ceiling $CEILING exchanges/s (sign $SIGN/s, verify $VERIFY/s); Markdown: $OUT" >&2
