"""Placeholder: replaced by the catalog pages."""

from __future__ import annotations

from fastapi import APIRouter

from api.web.render import WebRoute

router = APIRouter(route_class=WebRoute, include_in_schema=False)
