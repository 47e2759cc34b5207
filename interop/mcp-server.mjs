// Interop: an MCP client nobody here wrote — the MCP TypeScript SDK's Client,
// StreamableHTTPClientTransport and CrossAppAccessProvider, unmodified — against
// examples/mcp_server.rs running under deployment B (resource AS, :8081) of the
// embedded default. The SDK follows the server's 401 to its RFC 9728 metadata,
// gets an ID-JAG from A (:8080) through its assertion callback, redeems it at B
// (RFC 7523 jwt-bearer), connects, lists the tools, calls the read tool (which
// exchanges for a hop token to the logs API and calls it) and is refused the
// destructive one.
import { Client, StreamableHTTPClientTransport, CrossAppAccessProvider, discoverAndRequestJwtAuthGrant } from '@modelcontextprotocol/client';
const A = process.env.A ?? 'http://127.0.0.1:8080', B = process.env.B ?? 'http://127.0.0.1:8081';
const MCP = process.env.MCP ?? 'http://127.0.0.1:8090/mcp';
const fail = (why) => { console.error(`mcp-server interop: ${why}`); process.exit(1); };

const idToken = (await (await fetch(`${A}/dev/idp/id-token`, { method: 'POST', body: new URLSearchParams({ user: 'alice', client_id: 'triage-agent' }) })).json()).id_token;
let asked = null;
const authProvider = new CrossAppAccessProvider({
  assertion: async (ctx) => {
    asked = { authorizationServerUrl: ctx.authorizationServerUrl, resourceUrl: ctx.resourceUrl, scope: ctx.scope };
    const grant = await discoverAndRequestJwtAuthGrant({
      idpUrl: A, audience: ctx.authorizationServerUrl, resource: ctx.resourceUrl, idToken,
      clientId: 'triage-agent', clientSecret: 'triage-agent-secret', scope: ctx.scope, fetchFn: ctx.fetchFn,
    });
    return grant.jwtAuthGrant;
  },
  clientId: 'triage-agent-at-saas',
  clientSecret: 'triage-agent-at-saas-secret',
  expectedIssuer: B,
});
const client = new Client({ name: 'xaa-interop', version: '1.0.0' });
await client.connect(new StreamableHTTPClientTransport(new URL(MCP), { authProvider }));
console.log('discovered through RFC 9728:', JSON.stringify(asked));
if (!asked || asked.resourceUrl.replace(/\/$/, '') !== MCP || asked.authorizationServerUrl !== B) fail(`the SDK asked for ${JSON.stringify(asked)}`);

const { tools } = await client.listTools();
const names = tools.map((t) => t.name).sort();
console.log('tools:', names.join(', '));
for (const t of ['delete_logs', 'search_logs']) if (!names.includes(t)) fail(`no tool ${t}`);

const read = await client.callTool({ name: 'search_logs', arguments: { query: 'error' } });
if (read.isError) fail(`search_logs failed: ${JSON.stringify(read.content)}`);
// What the logs API saw through the hop token: the user, the chain with the
// MCP server added in front of the agent, the same txn as the token the SDK got.
const seen = read.structuredContent?.logs_api?.answer?.saw;
console.log('search_logs: the logs API saw', JSON.stringify(seen));
if (seen?.user?.sub !== 'alice') fail('the logs API did not see the user');
const chain = (seen?.act ?? []).map((a) => a.sub);
if (chain.join(' <- ') !== 'mcp:logs@saas <- agent:triage') fail(`the logs API saw the chain ${chain}`);
if (!seen?.txn || seen.txn !== read.structuredContent?.mcp_server_saw?.txn) fail('one txn across the hops');

const destroy = await client.callTool({ name: 'delete_logs', arguments: { older_than: '2026-11-30T00:00:00Z' } });
console.log('delete_logs:', destroy.isError ? 'refused' : 'ALLOWED', JSON.stringify(destroy.structuredContent ?? destroy.content));
if (!destroy.isError) fail('the destructive tool was allowed for an agent');
if (destroy.structuredContent?.refused !== 'tool.agent_category') fail('refused for another reason than the agent category');
await client.close();
console.log('mcp-server interop: ok');
