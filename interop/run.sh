#!/usr/bin/env bash
# Interop check with real, unmodified MCP client SDKs against the embedded
# default (deployment A = broker/IdP on :8080, deployment B = resource AS on :8081):
#   - @modelcontextprotocol/client: discoverAndRequestJwtAuthGrant (RFC 8693 → ID-JAG)
#     and exchangeJwtAuthGrant (RFC 7523 jwt-bearer), tokens verified with `jose`
#     requiring typ oauth-id-jag+jwt / at+jwt;
#   - mcp (Python): IdentityAssertionOAuthProvider driving the 401 → jwt-bearer flow,
#     with client_secret_post and client_secret_basic.
# Needs node/npm and python3 with venv; installs the pinned SDKs into a scratch
# directory (never the repo). `.ci/run` runs it on every landing: a change that
# breaks a real MCP client cannot land.
# The broker is the debug build `cargo test` already made (XAA_BIN overrides).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
work="$(mktemp -d)"
broker=
trap '[ -n "$broker" ] && kill $broker 2>/dev/null; rm -rf "$work"' EXIT
# Pinned: a new SDK release is a change to review, not a surprise in CI.
TS_CLIENT=@modelcontextprotocol/client@2.4.0
JOSE=jose@6.2.18
PY_MCP=mcp==2.3.0
if [ -z "${XAA_BIN:-}" ]; then
  (cd "$root" && cargo build -q --bin xaa-broker)
  XAA_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/xaa-broker"
fi
"$XAA_BIN" >"$work/broker.log" 2>&1 & broker=$!
(cd "$work" && npm install -q --no-audit --no-fund "$TS_CLIENT" "$JOSE" >"$work/npm.log" 2>&1) \
  || { cat "$work/npm.log"; echo "interop: npm install failed"; exit 1; }
python3 -m venv "$work/venv" && "$work/venv/bin/pip" install -q "$PY_MCP"
ready=
for _ in $(seq 100); do curl -fsS http://127.0.0.1:8081/readyz >/dev/null 2>&1 && ready=1 && break; sleep 0.2; done
[ -n "$ready" ] || { cat "$work/broker.log"; echo "interop: the broker did not become ready"; exit 1; }
echo "== MCP TypeScript SDK ($TS_CLIENT)"
cp "$here/mcp-typescript.mjs" "$work/" && (cd "$work" && node mcp-typescript.mjs)
echo "== MCP Python SDK ($PY_MCP)"
"$work/venv/bin/python" "$here/mcp-python.py"
echo "interop: ok"
