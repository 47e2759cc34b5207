// Interop: panva's oauth4webapi, unmodified, speaking DPoP (RFC 9449) to
// deployments A (broker, :8080) and B (resource AS, :8081) of the embedded
// default. A token exchange with a proof gives an ID-JAG bound to the client's
// key (cnf.jkt, and the response's cnf); B redeems it with the jwt-dpop grant
// and a proof by the same key for a DPoP access token bound to it; a proof by
// another key is refused with invalid_grant. Tokens are verified with `jose`.
import * as oauth from 'oauth4webapi';
import { createRemoteJWKSet, jwtVerify, calculateJwkThumbprint, exportJWK } from 'jose';

const A = process.env.A ?? 'http://127.0.0.1:8080', B = process.env.B ?? 'http://127.0.0.1:8081';
const RES = 'https://mcp.saas.example.com/mcp';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_DPOP = 'urn:ietf:params:oauth:grant-type:jwt-dpop';
const insecure = { [oauth.allowInsecureRequests]: true }; // loopback http in this check only
const fail = (msg) => { console.error('oauth4webapi-dpop:', msg); process.exit(1); };

async function discover(issuer) {
  const url = new URL(issuer);
  return oauth.processDiscoveryResponse(url, await oauth.discoveryRequest(url, { algorithm: 'oauth2', ...insecure }));
}
const [asA, asB] = [await discover(A), await discover(B)];
for (const as of [asA, asB]) {
  if (!as.dpop_signing_alg_values_supported?.includes('ES256')) fail(`${as.issuer} does not list ES256 for DPoP`);
}
if (!asB.grant_types_supported?.includes(JWT_DPOP)) fail('B does not list the jwt-dpop grant');

const idToken = (await (await fetch(`${A}/dev/idp/id-token`, {
  method: 'POST', body: new URLSearchParams({ user: 'alice', client_id: 'triage-agent' }),
})).json()).id_token;

const key = await oauth.generateKeyPair('ES256');
const jkt = await calculateJwkThumbprint(await exportJWK(key.publicKey));
const agent = { client_id: 'triage-agent' };
const agentAtB = { client_id: 'triage-agent-at-saas' };

/** An ID-JAG for B, requested with a DPoP proof by `key`. */
async function idJag() {
  const res = await oauth.genericTokenEndpointRequest(asA, agent, oauth.ClientSecretBasic('triage-agent-secret'), TOKEN_EXCHANGE, {
    requested_token_type: 'urn:ietf:params:oauth:token-type:id-jag', audience: B, resource: RES,
    subject_token: idToken, subject_token_type: 'urn:ietf:params:oauth:token-type:id_token',
  }, { DPoP: oauth.DPoP(agent, key), ...insecure });
  // An ID-JAG is not an access token: token_type N_A (RFC 8693 §2.2.1).
  return oauth.processGenericTokenEndpointResponse(asA, agent, res, { recognizedTokenTypes: { n_a: () => {} } });
}

/** Redeem `assertion` at B with the jwt-dpop grant and a proof by `proofKey`. */
async function redeem(assertion, proofKey) {
  const res = await oauth.genericTokenEndpointRequest(asB, agentAtB, oauth.ClientSecretBasic('triage-agent-at-saas-secret'), JWT_DPOP,
    { assertion }, { DPoP: oauth.DPoP(agentAtB, proofKey), ...insecure });
  return oauth.processGenericTokenEndpointResponse(asB, agentAtB, res);
}

const jag = await idJag();
if (jag.cnf?.jkt !== jkt) fail(`the exchange response does not confirm the binding: ${JSON.stringify(jag.cnf)}`);
const jagClaims = (await jwtVerify(jag.access_token, createRemoteJWKSet(new URL(`${A}/jwks`)), { typ: 'oauth-id-jag+jwt', issuer: A, audience: B })).payload;
if (jagClaims.cnf?.jkt !== jkt) fail('the ID-JAG is not bound to the key');
console.log('ID-JAG bound to the DPoP key:', JSON.stringify(jagClaims.cnf));

const at = await redeem(jag.access_token, key);
if (at.token_type !== 'dpop') fail(`token_type ${at.token_type}, expected DPoP`);
const atClaims = (await jwtVerify(at.access_token, createRemoteJWKSet(new URL(`${B}/jwks`)), { typ: 'at+jwt', issuer: B, audience: RES })).payload;
if (atClaims.cnf?.jkt !== jkt) fail('the access token is not bound to the key');
console.log('access token: token_type', at.token_type, 'cnf', JSON.stringify(atClaims.cnf), 'txn', atClaims.txn);

const other = await oauth.generateKeyPair('ES256');
try {
  await redeem((await idJag()).access_token, other);
  fail('a bound ID-JAG was redeemed with a proof by another key');
} catch (e) {
  if (!(e instanceof oauth.ResponseBodyError) || e.error !== 'invalid_grant') throw e;
  console.log('another key refused:', e.error, '-', e.error_description);
}
