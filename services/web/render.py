"""Rendering pages, and the security headers every web interface response carries."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")


def security_headers(show_remote_images: bool = False) -> dict[str, str]:
    # The CSP backs up the HTML sanitizer: should it ever let something through, no script runs,
    # no form posts elsewhere and no remote image loads unless the reader asked for them.
    images = "'self' http: https:" if show_remote_images else "'self'"
    return {
        "Content-Security-Policy": f"default-src 'none'; img-src {images}; style-src 'unsafe-inline'; "
                                   "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        # Links in mail must not tell their site which message (URL) they were clicked in.
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def page(request: Request, name: str, context: dict[str, Any], status: int = 200,
         show_remote_images: bool = False) -> Response:
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status,
                                      headers=security_headers(show_remote_images))


def redirect(url: str) -> Response:
    """303: the browser follows with a GET, so a reload never repeats a POST."""
    return RedirectResponse(url, 303, headers=security_headers())
