"""Optional OIDC: a bearer token that is not an API key may be a JWT from the identity provider,
verified against its JWKS (MCP_LEDGER_OIDC_JWKS_URL, keys cached for 5 minutes, refetched for an
unknown `kid`), its issuer and audience. A claim (MCP_LEDGER_OIDC_ROLE_CLAIM, dotted for nested
claims) maps to roles through MCP_LEDGER_OIDC_ROLES (or names the roles itself); the highest
role wins. Asymmetric algorithms only: never `none` or an HMAC keyed with a public key."""

from __future__ import annotations

from typing import Any

import jwt
import structlog

from infra.security.api_keys import RANK, ROLES, Principal, Role
from infra.settings import Settings

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
LEEWAY_SECONDS = 30
log = structlog.get_logger("api.oidc")


class JwtVerifier:
    def __init__(self, settings: Settings) -> None:
        assert settings.oidc_jwks_url is not None
        self.settings = settings
        self.jwks = jwt.PyJWKClient(
            settings.oidc_jwks_url, cache_keys=True, lifespan=300, timeout=5
        )
        self.role_map: dict[str, Role] = {
            value: role for value, role in settings.oidc_role_map.items() if role in RANK
        } or {r: r for r in ROLES}

    def verify(self, token: str) -> Principal | None:
        """The token's principal, or None when it is not a valid token with a known role."""
        try:
            key = self.jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.settings.oidc_audience,
                issuer=self.settings.oidc_issuer,
                leeway=LEEWAY_SECONDS,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self.settings.oidc_audience is not None,
                    "verify_iss": self.settings.oidc_issuer is not None,
                },
            )
        except jwt.PyJWKClientError as exc:
            log.warning("oidc_jwks_unavailable", error=type(exc).__name__)
            return None
        except jwt.PyJWTError as exc:
            log.info("oidc_token_refused", error=type(exc).__name__)
            return None
        role = self._role(claims)
        if role is None:
            log.info("oidc_token_refused", error="no role claim maps to a role", sub=claims["sub"])
            return None
        name = claims.get("preferred_username") or claims.get("email") or claims["sub"]
        return Principal(str(claims["sub"]), str(name).replace(":", "_"), role, kind="oidc")

    def _role(self, claims: dict[str, Any]) -> Role | None:
        value: Any = claims
        for part in self.settings.oidc_role_claim.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        values = value.split() if isinstance(value, str) else value
        if not isinstance(values, list):
            return None
        ranks = [
            RANK[self.role_map[v]] for v in values if isinstance(v, str) and v in self.role_map
        ]
        return ROLES[max(ranks)] if ranks else None
