"""The local stack's OAuth 2.0 / OpenID Connect identity provider, for Kafka's OAUTHBEARER.

Used only by scripts/stack and the secured tests. Managed Kafka services (Confluent Cloud,
Azure Event Hubs, Strimzi with Keycloak...) take OAUTHBEARER tokens from an identity
provider that nobody can reach from here; this one speaks the same documented protocol:

- POST /token: the client credentials grant (RFC 6749, section 4.4). The client
  authenticates with HTTP Basic (client id and secret, section 2.3.1), the body is
  `grant_type=client_credentials` with an optional `scope`. The answer is a JSON access
  token (section 5.1): an RS256-signed JWT whose `sub` is the client id, with `iss`,
  `aud`, `iat`, `exp` and `scope`. Anything else gets the section 5.2 error JSON.
- GET /jwks: the signing key as a JSON Web Key Set (RFC 7517), which the broker's
  OAuthBearerValidatorCallbackHandler fetches to verify tokens.

    oidc.py PORT KEY_PEM CLIENTS_DIR AUDIENCE [ISSUER]
        KEY_PEM: the RSA private key (made once by scripts/stack), or - for a key of its
            own that nobody trusts (the forged-token test)
        CLIENTS_DIR: <client id>.password files (one trailing newline ignored): locally, a
            principal's OAuth client secret is its SCRAM password
        AUDIENCE: the `aud` claim the broker expects
        ISSUER: the `iss` claim [http://127.0.0.1:PORT]
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


class Provider:
    def __init__(self, port: int, key_pem: str, clients_dir: str, audience: str, issuer: str = ""):
        if key_pem == "-":
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            with open(key_pem, "rb") as f:
                self.key = serialization.load_pem_private_key(f.read(), password=None)
        numbers = self.key.public_key().public_numbers()
        self.jwk = {"kty": "RSA", "use": "sig", "alg": "RS256",
                    "n": b64url(uint(numbers.n)), "e": b64url(uint(numbers.e))}
        self.jwk["kid"] = hashlib.sha256(json.dumps(self.jwk, sort_keys=True).encode()).hexdigest()[:16]
        self.issuer = issuer or f"http://127.0.0.1:{port}"
        self.clients_dir = clients_dir
        self.audience = audience

    def secret_of(self, client_id: str):
        if not client_id or "/" in client_id or client_id.startswith("."):
            return None
        try:
            with open(os.path.join(self.clients_dir, f"{client_id}.password")) as f:
                return f.read().rstrip("\n")
        except OSError:
            return None

    def token(self, client_id: str, scope: str) -> str:
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": self.jwk["kid"]}
        claims = {"iss": self.issuer, "sub": client_id, "aud": self.audience,
                  "iat": now, "exp": now + 3600}
        if scope:
            claims["scope"] = scope
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"


def handler(provider: Provider):
    class Handler(BaseHTTPRequestHandler):
        def answer(self, status: int, body: dict, extra_headers=()):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            for name, value in extra_headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/jwks":
                self.answer(200, {"keys": [provider.jwk]})
            else:
                self.answer(404, {"error": "not_found"})

        def do_POST(self):
            if self.path != "/token":
                self.answer(404, {"error": "not_found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
            if form.get("grant_type") != ["client_credentials"]:
                self.answer(400, {"error": "unsupported_grant_type"})
                return
            auth = self.headers.get("Authorization", "")
            client_id, secret = "", ""
            if auth.startswith("Basic "):
                try:
                    client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
                except ValueError:
                    pass
            known = provider.secret_of(client_id)
            if known is None or not hmac.compare_digest(known.encode(), secret.encode()):
                self.answer(401, {"error": "invalid_client"},
                            [("WWW-Authenticate", 'Basic realm="trackledger-local"')])
                return
            scope = " ".join(form.get("scope", [""])).strip()
            self.answer(200, {"access_token": provider.token(client_id, scope),
                              "token_type": "Bearer", "expires_in": 3600})

        def log_message(self, fmt, *args):
            sys.stderr.write("oidc: " + (fmt % args) + "\n")

    return Handler


def main() -> int:
    if len(sys.argv) not in (5, 6):
        print(__doc__, file=sys.stderr)
        return 2
    port = int(sys.argv[1])
    provider = Provider(port, *sys.argv[2:])
    server = ThreadingHTTPServer(("127.0.0.1", port), handler(provider))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
