// Interop: the MCP TypeScript SDK cross-app-access functions, unmodified, against
// deployments A (broker, :8080) and B (resource AS, :8081) of the embedded default.
import { discoverAndRequestJwtAuthGrant, exchangeJwtAuthGrant, discoverAuthorizationServerMetadata } from '@modelcontextprotocol/client';
import { createRemoteJWKSet, jwtVerify } from 'jose';
const A = process.env.A ?? 'http://127.0.0.1:8080', B = process.env.B ?? 'http://127.0.0.1:8081';
const RES = 'https://mcp.saas.example.com/mcp';
const idToken = (await (await fetch(`${A}/dev/idp/id-token`, { method: 'POST', body: new URLSearchParams({ user: 'alice', client_id: 'triage-agent' }) })).json()).id_token;
const metaB = await discoverAuthorizationServerMetadata(B);
console.log('RAS metadata ok:', metaB.issuer, metaB.authorization_grant_profiles_supported);
const grant = await discoverAndRequestJwtAuthGrant({ idpUrl: A, audience: B, resource: RES, idToken, clientId: 'triage-agent', clientSecret: 'triage-agent-secret', scope: 'crm.read' });
console.log('ID-JAG: expiresIn', grant.expiresIn, 'scope', grant.scope);
const jag = await jwtVerify(grant.jwtAuthGrant, createRemoteJWKSet(new URL(`${A}/jwks`)), { typ: 'oauth-id-jag+jwt', issuer: A, audience: B });
console.log('ID-JAG verified by jose:', JSON.stringify({ sub: jag.payload.sub, client_id: jag.payload.client_id, resource: jag.payload.resource, act: jag.payload.act }));
const tokens = await exchangeJwtAuthGrant({ tokenEndpoint: metaB.token_endpoint, jwtAuthGrant: grant.jwtAuthGrant, clientId: 'triage-agent-at-saas', clientSecret: 'triage-agent-at-saas-secret' });
console.log('token_type', tokens.token_type, 'expires_in', tokens.expires_in, typeof tokens.expires_in);
const at = await jwtVerify(tokens.access_token, createRemoteJWKSet(new URL(`${B}/jwks`)), { typ: 'at+jwt', issuer: B, audience: RES });
console.log('access token verified by jose:', JSON.stringify({ sub: at.payload.sub, scope: at.payload.scope, txn: at.payload.txn, act: at.payload.act }));
// client_secret_post variant at the RAS
const grant2 = await discoverAndRequestJwtAuthGrant({ idpUrl: A, audience: B, resource: RES, idToken, clientId: 'triage-agent', clientSecret: 'triage-agent-secret' });
const t2 = await exchangeJwtAuthGrant({ tokenEndpoint: metaB.token_endpoint, jwtAuthGrant: grant2.jwtAuthGrant, clientId: 'triage-agent-at-saas', clientSecret: 'triage-agent-at-saas-secret', authMethod: 'client_secret_post' });
console.log('post auth ok', t2.token_type);
