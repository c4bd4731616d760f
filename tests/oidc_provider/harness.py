"""Start the test OpenID Connect provider as a separate process and act as a person at its login page.

`OidcProvider` runs `python -m tests.oidc_provider.serve` on a free local port with a registered client, manages
its users through the control endpoint, and `ProviderBrowser` follows an authorization URL the way a browser
does (the provider's login form included) until the provider redirects back to the relying party.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

ROOT = Path(__file__).resolve().parents[2]
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class OidcProvider:
    redirect_uris: list[str]
    client_id: str = "governance-portal"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    port: int = field(default_factory=free_port)
    control_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    process: subprocess.Popen | None = None
    folder: Path | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/o"

    def start(self, folder: Path) -> "OidcProvider":
        client = {"client_id": self.client_id, "client_secret": self.client_secret,
                  "redirect_uris": self.redirect_uris}
        env = {**os.environ, "OIDC_PROVIDER_DIR": str(folder), "OIDC_PROVIDER_CONTROL_SECRET": self.control_secret,
               "OIDC_PROVIDER_CLIENT": json.dumps(client)}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        self.folder = folder
        log = (folder / "provider.log").open("w")  # a file, not a pipe: a full pipe would block the server
        self.process = subprocess.Popen([sys.executable, "-m", "tests.oidc_provider.serve", str(self.port)],
                                        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"the test OIDC provider did not start: {line}{(folder / 'provider.log').read_text()}")
        self._wait_for_discovery()
        return self

    def _wait_for_discovery(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=5).raise_for_status()
                return
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def user(self, username: str, **fields: Any) -> str:
        """Create or update a user at the provider (password, email, first_name, last_name, groups, active);
        returns its `sub`."""
        response = requests.post(f"http://127.0.0.1:{self.port}/control/user/", json={"username": username, **fields},
                                 headers={"X-Control-Secret": self.control_secret}, timeout=10)
        response.raise_for_status()
        return response.json()["sub"]

    def settings(self) -> dict[str, Any]:
        """The relying party's settings for this provider (what the environment variables set in production)."""
        return {"GOVERNANCE_OIDC_ISSUER": self.issuer, "GOVERNANCE_OIDC_CLIENT_ID": self.client_id,
                "GOVERNANCE_OIDC_CLIENT_SECRET": self.client_secret}


class ProviderRefused(AssertionError):
    """The provider's login page did not accept the username and password (wrong, or a disabled user)."""


class ProviderBrowser:
    """A person's browser at the provider: keeps the provider's cookies, fills its login form."""

    def __init__(self, provider: OidcProvider) -> None:
        self.provider = provider
        self.session = requests.Session()
        self.logins = 0  # how many times the provider asked for the password

    def authorize(self, url: str, username: str, password: str) -> str:
        """Follow the authorization URL, signing in at the provider whenever it asks; returns the URL the
        provider redirects back to (the relying party's callback with code and state, or an error)."""
        response = self.session.get(url, allow_redirects=False, timeout=10)
        for _ in range(10):
            if response.status_code in (301, 302, 303):
                target = urljoin(response.url, response.headers["Location"])
                if not target.startswith(f"http://127.0.0.1:{self.provider.port}/"):
                    return target
                response = self.session.get(target, allow_redirects=False, timeout=10)
            elif response.status_code == 200 and "provider-login" in response.text:
                response = self._log_in(response, username, password)
            else:
                raise AssertionError(f"provider answered {response.status_code}: {response.text[:500]}")
        raise AssertionError("too many redirects at the provider")

    def _log_in(self, page: requests.Response, username: str, password: str) -> requests.Response:
        token = CSRF_INPUT.search(page.text).group(1)
        next_url = re.search(r'name="next" value="([^"]*)"', page.text).group(1).replace("&amp;", "&")
        response = self.session.post(page.url, data={"csrfmiddlewaretoken": token, "username": username,
                                                      "password": password, "next": next_url},
                                     headers={"Referer": page.url}, allow_redirects=False, timeout=10)
        if response.status_code == 200:
            raise ProviderRefused(f"the provider refused the login of {username!r}")
        self.logins += 1
        return response


def start_provider(redirect_uris: list[str]) -> OidcProvider:
    return OidcProvider(redirect_uris=redirect_uris).start(Path(tempfile.mkdtemp(prefix="oidc-provider-")))
