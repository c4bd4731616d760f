"""Start the test OpenID Connect provider: `python -m tests.oidc_provider.serve PORT` with the environment

OIDC_PROVIDER_DIR       a fresh directory for its database and signing key
OIDC_PROVIDER_CLIENT    JSON: {"client_id", "client_secret", "redirect_uris": [...]}, the relying party registered
OIDC_PROVIDER_CONTROL_SECRET   the secret of /control/user/

It migrates its own SQLite database, registers the client (confidential, authorization code, RS256, consent
skipped like a first-party application), prints "ready" and serves until killed.
"""

import json
import os
import sys
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the signature wsgiref calls
        pass


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def main(port: int) -> None:
    folder = Path(os.environ["OIDC_PROVIDER_DIR"])
    key = folder / "signing_key.pem"
    if not key.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    os.environ.update(OIDC_PROVIDER_DB=str(folder / "provider.sqlite3"), OIDC_PROVIDER_KEY=str(key),
                      OIDC_PROVIDER_ISSUER=f"http://127.0.0.1:{port}/o",
                      DJANGO_SETTINGS_MODULE="tests.oidc_provider.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    register_client(json.loads(os.environ["OIDC_PROVIDER_CLIENT"]))
    from django.core.wsgi import get_wsgi_application

    server = make_server("127.0.0.1", port, get_wsgi_application(), server_class=ThreadingServer,
                         handler_class=QuietHandler)
    print("ready", flush=True)
    server.serve_forever()


def register_client(client: dict) -> None:
    from oauth2_provider.models import Application

    Application.objects.update_or_create(client_id=client["client_id"], defaults={
        "name": "governance", "client_type": Application.CLIENT_CONFIDENTIAL,
        "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
        "client_secret": client["client_secret"], "hash_client_secret": False,
        "redirect_uris": " ".join(client["redirect_uris"]), "algorithm": Application.RS256_ALGORITHM,
        "skip_authorization": True})


if __name__ == "__main__":
    main(int(sys.argv[1]))
