"""Placeholder: replaced by the ask page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from api.web.deps import VisitorDep
from api.web.render import WebRoute, page

router = APIRouter(route_class=WebRoute, include_in_schema=False)


@router.get("/")
async def ask_page(request: Request, visitor: VisitorDep) -> Response:
    return page(request, "error.html", visitor, status=200, kind="todo", message="ask page", request_id="")
