# Interop: the MCP Python SDK identity-assertion provider, unmodified, against the
# embedded default: A (broker, :8080) issues the ID-JAG, B (resource AS, :8081) redeems it.
import asyncio, json, base64
import httpx2
from mcp.client.auth.extensions.identity_assertion import IdentityAssertionOAuthProvider
A, B, MCP = "http://127.0.0.1:8080", "http://127.0.0.1:8081", "https://mcp.saas.example.com/mcp"

class Mem:
    def __init__(self): self.t = None; self.c = None
    async def get_tokens(self): return self.t
    async def set_tokens(self, t): self.t = t
    async def get_client_info(self): return self.c
    async def set_client_info(self, c): self.c = c

async def assertion_provider(audience, resource):
    async with httpx2.AsyncClient() as h:
        idt = (await h.post(f"{A}/dev/idp/id-token", data={"user": "alice", "client_id": "chat-app"})).json()["id_token"]
        r = await h.post(f"{A}/token", auth=("chat-app", "chat-app-secret"), data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "requested_token_type": "urn:ietf:params:oauth:token-type:id-jag",
            "audience": audience, "resource": resource,
            "subject_token": idt, "subject_token_type": "urn:ietf:params:oauth:token-type:id_token"})
        print("leg 1 (ID-JAG):", r.status_code, {k: v for k, v in r.json().items() if k != "access_token"})
        return r.json()["access_token"]

seen = {}
def mcp_server(request):  # stand-in MCP server: 401 until a bearer token arrives
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer "):
        return httpx2.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    seen["token"] = auth[7:]
    return httpx2.Response(200, json={"ok": True})

async def main():
    for method in ("client_secret_post", "client_secret_basic"):
        provider = IdentityAssertionOAuthProvider(server_url=MCP, storage=Mem(), client_id="chat-app-at-saas",
            client_secret="chat-app-at-saas-secret", issuer=B, assertion_provider=assertion_provider,
            token_endpoint_auth_method=method)
        async with httpx2.AsyncClient(auth=provider, mounts={"https://mcp.saas.example.com": httpx2.MockTransport(mcp_server)}) as c:
            r = await c.get(MCP)
            claims = json.loads(base64.urlsafe_b64decode(seen["token"].split(".")[1] + "=="))
            print(method, "-> MCP server answered", r.status_code, "token:", {k: claims[k] for k in ("iss", "aud", "sub", "client_id", "scope", "txn")})
asyncio.run(main())
