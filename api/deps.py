"""What routes receive, as `Annotated[..., Depends(...)]` aliases. Everything here comes from
`app.state`, set up once by the lifespan in api/app.py. The dependencies are `async def`: they only
read state (and stat the key file), so running them on the event loop saves a thread-pool hop each —
FastAPI runs a plain `def` dependency in the thread pool (seven hops per request before this)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.auth import KeyStore, key_id, presented_key
from api.errors import AuthRequired
from api.metrics import ApiMetrics
from api.settings import ApiSettings
from knowledge.model import Principal
from retrieval.requests import scoped_request_id
from retrieval.service import MeshService

# Declared for the OpenAPI document (both optional: no key = anonymous); parsing is done below, so a
# malformed Authorization header is a 401 rather than silently anonymous.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="`Authorization: Bearer <API key>` (from `meshrag keys create`).",
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="apiKey",
    description="The same API key in an `X-API-Key` header.",
)


async def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


async def get_service(request: Request) -> MeshService:
    return request.app.state.service


async def get_keys(request: Request) -> KeyStore:
    return request.app.state.keys


async def get_metrics(request: Request) -> ApiMetrics:
    return request.app.state.metrics


async def get_request_id(request: Request) -> str:
    """This request's id (X-Request-ID), set by RequestContextMiddleware."""
    return request.state.request_id


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
ServiceDep = Annotated[MeshService, Depends(get_service)]
KeysDep = Annotated[KeyStore, Depends(get_keys)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
RequestIdDep = Annotated[str, Depends(get_request_id)]


async def get_principal(
    request: Request,
    keys: KeysDep,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
    _api_key: Annotated[str | None, Security(api_key_scheme)] = None,
) -> Principal:
    """The caller: the principal of its API key, or anonymous (public products only) without one."""
    key = presented_key(request.headers.get("authorization"), request.headers.get("x-api-key"))
    principal = keys.principal_for(key)
    request.state.principal_id = principal.id
    request.state.key_id = key_id(key) if key is not None else None
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_keyed_principal(principal: PrincipalDep) -> Principal:
    """The caller, who must have presented a key (anonymous callers share one id, so their records
    would be readable by every other anonymous caller)."""
    if principal.id == Principal.anonymous().id:
        raise AuthRequired("this route needs an API key (Authorization: Bearer <key> or X-API-Key)")
    return principal


KeyedPrincipalDep = Annotated[Principal, Depends(get_keyed_principal)]


async def get_record_id(request: Request, principal: PrincipalDep) -> str:
    """The name of this request's provenance record: the generated request id, or the client's own
    X-Request-ID inside its key's namespace (retrieval.requests.scoped_request_id)."""
    rid: str = request.state.request_id
    if not request.state.request_id_given:
        return rid
    scope = getattr(request.state, "key_id", None) or principal.id
    return scoped_request_id(rid, scope)


RecordIdDep = Annotated[str, Depends(get_record_id)]
