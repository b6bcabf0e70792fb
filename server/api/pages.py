"""What every page of the web app shares: rendering with the visitor's language and scope."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from server.access.scope import Scope
from server.api import i18n
from server.api.deps import templates

if i18n.context not in templates.context_processors:
    templates.context_processors.append(i18n.context)


def render(request: Request, name: str, scope: Scope | None, status_code: int = 200,
           **ctx: Any) -> Response:
    """A template with the user's scope; an explicit ?lang= is remembered in a cookie."""
    resp = templates.TemplateResponse(request, name, {"user": scope, "scope": scope, **ctx},
                                      status_code=status_code)
    return i18n.keep_lang(request, resp)
