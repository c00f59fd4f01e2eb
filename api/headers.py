"""Headers every HTTP answer carries (set by api.security.SecurityHeaders, and by the error
handler for answers that bypass the middleware)."""

from __future__ import annotations

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    # JSON answers need nothing from a browser: no scripts, frames, forms or base URI.
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'",
}
HSTS = "max-age=31536000; includeSubDomains"
