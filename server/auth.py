"""Bearer API keys on every /v1 route (health, metrics and the API docs stay open).

With no key configured the server generates one for the run and logs it, unless dev mode (no keys at all) is
chosen explicitly; dev mode is logged loudly at start-up and on /v2/health/ready.
"""

from __future__ import annotations

import hmac
import logging
import secrets

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .settings import Settings

log = logging.getLogger("s2vc.server")
_bearer = HTTPBearer(auto_error=False, description="An API key from S2VC_API_KEYS")


class Auth:
    def __init__(self, settings: Settings) -> None:
        self.dev_mode = settings.dev_mode
        self.keys = [k.encode() for k in settings.api_keys]
        self.generated: str | None = None
        if self.dev_mode:
            log.warning("!" * 78)
            log.warning("DEV MODE: API keys are OFF; anyone who can reach this port can use the server.")
            log.warning("Never run dev mode on a shared network; set S2VC_API_KEYS instead.")
            log.warning("!" * 78)
        elif not self.keys:
            self.generated = secrets.token_urlsafe(24)
            self.keys = [self.generated.encode()]
            log.warning("S2VC_API_KEYS is not set: this run accepts one generated key: %s", self.generated)
            log.warning("(set S2VC_API_KEYS=key1,key2 for fixed keys, or S2VC_DEV_MODE=1 to serve without keys)")

    def check(self, credentials: HTTPAuthorizationCredentials | None) -> None:
        """401 without a bearer key, 403 with a wrong one; nothing in dev mode."""
        if self.dev_mode:
            return
        if credentials is None or not credentials.credentials:
            raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>'", headers={"WWW-Authenticate": "Bearer"})
        given = credentials.credentials.encode()
        if not any(hmac.compare_digest(given, key) for key in self.keys):
            raise HTTPException(403, "invalid API key")


def require_key(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """FastAPI dependency: the request carries a valid API key (or the server is in dev mode)."""
    request.app.state.auth.check(credentials)
