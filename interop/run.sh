#!/usr/bin/env bash
# Interop check with real, unmodified MCP client SDKs against the embedded
# default (deployment A = broker/IdP on :8080, deployment B = resource AS on :8081):
#   - @modelcontextprotocol/client: discoverAndRequestJwtAuthGrant (RFC 8693 → ID-JAG)
#     and exchangeJwtAuthGrant (RFC 7523 jwt-bearer), tokens verified with `jose`
#     requiring typ oauth-id-jag+jwt / at+jwt;
#   - mcp (Python): IdentityAssertionOAuthProvider driving the 401 → jwt-bearer flow,
#     with client_secret_post and client_secret_basic.
# Needs node/npm and python3; installs the SDKs into a scratch directory (not the repo).
# Not part of .ci/run: it downloads packages from npm and PyPI.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'kill $broker 2>/dev/null || true; rm -rf "$work"' EXIT
(cd "$here/.." && cargo build --release -q)
"$here/../target/release/xaa-broker" >"$work/broker.log" 2>&1 & broker=$!
(cd "$work" && npm install -q --no-audit --no-fund @modelcontextprotocol/client@2.4.0 jose@6 >/dev/null 2>&1)
python3 -m venv "$work/venv" && "$work/venv/bin/pip" install -q "mcp==2.3.0"
for _ in $(seq 50); do curl -fsS http://127.0.0.1:8081/readyz >/dev/null 2>&1 && break; sleep 0.2; done
cp "$here/mcp-typescript.mjs" "$work/" && (cd "$work" && node mcp-typescript.mjs)
"$work/venv/bin/python" "$here/mcp-python.py"
echo "interop: ok"
