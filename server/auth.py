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


def banner(settings: Settings, auth: Auth) -> str:
    """What an operator needs to call the server, key included, printed once at start-up (not buried in a log line)."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    url = f"http://{host}:{settings.port}"
    if auth.dev_mode:
        key_line = "API key:  none - DEV MODE, anyone who can reach this port can use the server"
        header = ""
    else:
        key = auth.generated or "<one of S2VC_API_KEYS>"
        origin = "generated for this run; set S2VC_API_KEYS=key1,key2 for fixed keys" if auth.generated else "from S2VC_API_KEYS"
        key_line = f"API key:  {key}   ({origin})"
        header = f' -H "Authorization: Bearer {key}"'
    rule = "=" * 78
    return "\n".join([
        rule,
        f"  s2vc server on {url}",
        f"  {key_line}",
        f"  ready?    curl {url}/v2/health/ready",
        f"  encode:   curl{header} -F operation=encode -F file=@clip.mp4 {url}/v1/jobs",
        f"  API docs: {url}/docs      call page: {url}/      metrics: {url}/metrics",
        rule,
    ])


def require_key(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """FastAPI dependency: the request carries a valid API key (or the server is in dev mode)."""
    request.app.state.auth.check(credentials)
