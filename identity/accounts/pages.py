"""What the account pages share: answering a form post, and limiting failed attempts.

Used by the password step (``views``), the second step and security page (``factors``),
the sessions page and passkeys; kept apart so each of them can import it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from identity.extensions import limit
from identity.runtime import runtime

# A failure shows the form again (200 or 400); a 429 or a 503 is no attempt.
FORM_FAILURES = (200, 400)


def see_other(endpoint: str, **values: Any) -> BaseResponse:
    """303 after a POST, never 307/308 which would replay the form (BCP-42)."""
    return see_other_url(url_for(endpoint, **values))


def see_other_url(location: str) -> BaseResponse:
    return redirect(location, code=303)


def is_read() -> bool:
    """GET or HEAD. Flask sends HEAD to the GET branch's view too; testing only for "GET"
    treated a HEAD (mail scanners send them) as a failed POST and answered 400."""
    return request.method in ("GET", "HEAD")


def limit_failures(
    setting: str, failures: tuple[int, ...] = FORM_FAILURES
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A per-address limit (the rate-limit setting named ``setting``) on failed attempts
    only: a success answers with a redirect (or, for the passkey endpoints, 200 JSON) and
    is not counted, so one office behind one NAT address is not locked out at nine o'clock
    (the per-account throttles stay as they are). ``failures``: the statuses that count."""
    return limit(
        lambda: getattr(runtime().settings, setting),
        methods=["POST"],
        deduct_when=lambda response: response.status_code in failures,
    )
