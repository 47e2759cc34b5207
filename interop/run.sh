#!/usr/bin/env bash
# Interop check with real, unmodified MCP client SDKs against the embedded
# default (deployment A = broker/IdP on :8080, deployment B = resource AS on :8081):
#   - @modelcontextprotocol/client: discoverAndRequestJwtAuthGrant (RFC 8693 → ID-JAG)
#     and exchangeJwtAuthGrant (RFC 7523 jwt-bearer), tokens verified with `jose`
#     requiring typ oauth-id-jag+jwt / at+jwt;
#   - mcp (Python): IdentityAssertionOAuthProvider driving the 401 → jwt-bearer flow,
#     with client_secret_post and client_secret_basic;
#   - @modelcontextprotocol/client again, as a whole MCP client (Client,
#     StreamableHTTPClientTransport, CrossAppAccessProvider) of
#     examples/mcp_server.rs running under B: 401 → RFC 9728 → ID-JAG from A →
#     jwt-bearer at B → list tools → the read tool (which exchanges for a hop
#     token to examples/logs_api.rs) → the destructive tool refused;
#   - oauth4webapi (panva), which speaks DPoP (RFC 9449): an ID-JAG bound to the
#     client's key, redeemed with the jwt-dpop grant and a proof by that key for
#     a DPoP access token; a proof by another key refused.
# Needs node/npm and python3 with venv; installs the pinned SDKs into a scratch
# directory (never the repo). `.ci/run` runs it on every landing: a change that
# breaks a real MCP client cannot land. Ports 8080, 8081, 8090 and 8091 must be free.
# The broker and the examples are the debug builds `cargo test` already made
# (XAA_BIN names another broker binary).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
work="$(mktemp -d)"
broker= logs= mcp=
trap 'kill $broker $logs $mcp 2>/dev/null; rm -rf "$work"' EXIT
# Pinned: a new SDK release is a change to review, not a surprise in CI.
TS_CLIENT=@modelcontextprotocol/client@2.4.0
JOSE=jose@6.2.18
OAUTH4WEBAPI=oauth4webapi@3.8.8
PY_MCP=mcp==2.3.0
bin="${CARGO_TARGET_DIR:-$root/target}/debug"
(cd "$root" && cargo build -q --bin xaa-broker --example mcp_server --example logs_api)
"${XAA_BIN:-$bin/xaa-broker}" >"$work/broker.log" 2>&1 & broker=$!
(cd "$work" && npm install -q --no-audit --no-fund "$TS_CLIENT" "$JOSE" "$OAUTH4WEBAPI" >"$work/npm.log" 2>&1) \
  || { cat "$work/npm.log"; echo "interop: npm install failed"; exit 1; }
python3 -m venv "$work/venv" && "$work/venv/bin/pip" install -q "$PY_MCP"
ready=
for _ in $(seq 100); do curl -fsS http://127.0.0.1:8081/readyz >/dev/null 2>&1 && ready=1 && break; sleep 0.2; done
[ -n "$ready" ] || { cat "$work/broker.log"; echo "interop: the broker did not become ready"; exit 1; }

echo "== MCP TypeScript SDK ($TS_CLIENT): the Cross-App Access functions"
cp "$here/mcp-typescript.mjs" "$work/" && (cd "$work" && node mcp-typescript.mjs)

echo "== oauth4webapi ($OAUTH4WEBAPI): DPoP-bound ID-JAG and jwt-dpop redemption"
cp "$here/oauth4webapi-dpop.mjs" "$work/" && (cd "$work" && node oauth4webapi-dpop.mjs)

echo "== MCP Python SDK ($PY_MCP)"
"$work/venv/bin/python" "$here/mcp-python.py"

echo "== MCP TypeScript SDK ($TS_CLIENT) as the MCP client of examples/mcp_server.rs under B"
"$bin/examples/logs_api" --broker http://127.0.0.1:8081 --resource https://logs-api.example.com \
  >"$work/logs_api.log" 2>&1 & logs=$!
"$bin/examples/mcp_server" --broker http://127.0.0.1:8081 --resource http://127.0.0.1:8090/mcp \
  --client-id mcp-logs-at-saas --client-secret mcp-logs-at-saas-secret \
  --logs-api-resource https://logs-api.example.com >"$work/mcp_server.log" 2>&1 & mcp=$!
ready=
for _ in $(seq 100); do
  curl -fsS http://127.0.0.1:8090/.well-known/oauth-protected-resource/mcp >/dev/null 2>&1 \
    && curl -fsS http://127.0.0.1:8091/.well-known/oauth-protected-resource >/dev/null 2>&1 \
    && ready=1 && break
  sleep 0.2
done
[ -n "$ready" ] || { tail -20 "$work/mcp_server.log" "$work/logs_api.log"; echo "interop: the example servers did not start"; exit 1; }
cp "$here/mcp-server.mjs" "$work/"
(cd "$work" && node mcp-server.mjs) || { tail -20 "$work/mcp_server.log" "$work/logs_api.log"; exit 1; }
echo "interop: ok"
