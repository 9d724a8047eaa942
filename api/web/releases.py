"""GET /releases, /releases/{id}, /releases/diff and POST /releases/publish, /releases/rollback.

Every page shows only the products the visitor may read under the catalog's current contracts, the rule
of the JSON API's releases routes (`api.routes.releases.readable`), so counts and diffs say nothing about
other products. Publishing and rolling back need one of `release_manager_roles` (settings); the forms
are shown only to those who hold one, and a request from anyone else is refused (403) before anything
moves. Each move is logged with the principal that made it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from api.deps import ServiceDep, SettingsDep
from api.routes.releases import get_release, list_releases, readable
from api.settings import ApiSettings
from api.web.deps import VisitorDep
from api.web.render import SECURITY_HEADERS, WebRoute, page
from api.web.session import CSRF_FIELD, Visitor, check_csrf
from indexing.releases import ProductEntry, Release
from knowledge.errors import NotAllowed
from knowledge.model import Principal
from retrieval.service import MeshService

router = APIRouter(route_class=WebRoute, include_in_schema=False)
log = logging.getLogger("meshrag.web")

# A release id or the `current` alias: one file name, never a path (an unknown one is the registry's 404).
RELEASE_REF = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$"
OPTIONAL_RELEASE_REF = r"^([A-Za-z0-9][A-Za-z0-9_-]{0,79})?$"
ReleaseRef = Annotated[str, Query(max_length=80, pattern=RELEASE_REF)]
ReleaseField = Annotated[str, Form(max_length=80, pattern=RELEASE_REF)]
CsrfField = Annotated[str | None, Form(alias=CSRF_FIELD, max_length=200)]
ChangeKind = Literal["added", "removed", "changed", "unchanged"]


@dataclass(frozen=True)
class EntryChange:
    """How one product differs between two releases (`before` → `after`; None where it is absent):
    its versions and its documents added, removed and changed (by revision hash)."""

    product_id: str
    before: ProductEntry | None
    after: ProductEntry | None
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    @classmethod
    def between(cls, product_id: str, before: ProductEntry | None, after: ProductEntry | None) -> EntryChange:
        old = before.documents if before is not None else {}
        new = after.documents if after is not None else {}
        return cls(product_id, before, after,
                   added=tuple(sorted(set(new) - set(old))),
                   removed=tuple(sorted(set(old) - set(new))),
                   changed=tuple(sorted(d for d in set(old) & set(new) if old[d] != new[d])))

    @property
    def kind(self) -> ChangeKind:
        if self.before is None:
            return "added"
        if self.after is None:
            return "removed"
        return "unchanged" if self.before == self.after else "changed"

    def summary(self) -> str:
        """The change in words: versions, then documents."""
        if self.kind in ("added", "removed"):
            entry = self.after or self.before
            assert entry is not None
            return (f"{self.kind}: version {entry.product_version}, {len(entry.documents)} documents, "
                    f"{entry.n_chunks} chunks")
        if self.kind == "unchanged":
            return "unchanged"
        before, after = self.before, self.after
        assert before is not None and after is not None
        parts = []
        if before.product_version != after.product_version:
            parts.append(f"version {before.product_version} → {after.product_version}")
        docs = [f"{len(names)} document{'s' if len(names) != 1 else ''} {label}"
                for label, names in (("added", self.added), ("removed", self.removed), ("changed", self.changed))
                if names]
        parts += docs
        if before.n_chunks != after.n_chunks:
            parts.append(f"chunks {before.n_chunks} → {after.n_chunks}")
        if not docs and before.chunk_version != after.chunk_version:
            parts.append("re-chunked (same documents)")
        elif not docs and before.embedding_version != after.embedding_version:
            parts.append("re-embedded (same chunks)")
        return "; ".join(parts) or "metadata only"


@dataclass(frozen=True)
class ReleasesDiff:
    """Two releases compared over the products the visitor may read in both the catalog and the release."""

    a: Release
    b: Release
    changes: tuple[EntryChange, ...]

    def of_kind(self, kind: ChangeKind) -> list[EntryChange]:
        return [c for c in self.changes if c.kind == kind]


def diff_releases(service: MeshService, principal: Principal, a: str, b: str) -> ReleasesDiff:
    registry = service.context.releases
    ra, rb = registry.get(a), registry.get(b)  # an unknown id: ReleaseNotFound (404), as the API says it
    before = {e.product_id: e for e in readable(service, ra, principal)}
    after = {e.product_id: e for e in readable(service, rb, principal)}
    changes = tuple(EntryChange.between(pid, before.get(pid), after.get(pid))
                    for pid in sorted(set(before) | set(after)))
    return ReleasesDiff(ra, rb, changes)


def may_manage(visitor: Visitor, settings: ApiSettings) -> bool:
    """Whether the visitor may publish and roll back: signed in, with one of the release-manager roles."""
    return visitor.signed_in and bool(visitor.principal.roles & set(settings.release_manager_roles))


def require_manager(visitor: Visitor, settings: ApiSettings) -> None:
    if may_manage(visitor, settings):
        return
    needed = ", ".join(settings.release_manager_roles) or "none (publishing from the web is turned off)"
    who = (f"{visitor.principal.id} holds {', '.join(sorted(visitor.principal.roles)) or 'no roles'}"
           if visitor.signed_in else "you are not signed in")
    raise NotAllowed(f"publishing and rolling back releases needs one of the roles: {needed}; {who}. "
                     "Ask a release manager, or an operator to run `meshrag releases publish`.")


@router.get("/releases")
async def releases_page(
    request: Request,
    visitor: VisitorDep,
    service: ServiceDep,
    settings: SettingsDep,
    published: Annotated[str | None, Query(max_length=80)] = None,
    rolled_back: Annotated[str | None, Query(max_length=80)] = None,
) -> Response:
    listing = await run_in_threadpool(list_releases, service, visitor.principal)
    newest_first = list(reversed(listing.releases))
    moved = None
    # Said only while true: a link with ?published= cannot make the page claim a move that did not happen.
    if published and published == listing.current:
        moved = f"Published {published}: it is the current release now."
    elif rolled_back and rolled_back == listing.current:
        moved = f"Rolled back: {rolled_back} is the current release now."
    a, b = default_comparison([r.id for r in listing.releases], listing.current)
    return page(request, "releases.html", visitor, nav="releases", releases=newest_first, current=listing.current,
                moved=moved, can_manage=may_manage(visitor, settings), diff_a=a, diff_b=b)


def default_comparison(oldest_first: list[str], current: str | None) -> tuple[str | None, str | None]:
    """What the compare form proposes: current → the newest release when one is newer (what publishing it
    would change), else the release before current → current (what the last publish changed)."""
    if not oldest_first:
        return None, None
    at = oldest_first.index(current) if current in oldest_first else len(oldest_first) - 1
    if at < len(oldest_first) - 1:
        return oldest_first[at], oldest_first[-1]
    return oldest_first[max(at - 1, 0)], oldest_first[at]


@router.get("/releases/diff")
async def release_diff_page(request: Request, visitor: VisitorDep, service: ServiceDep,
                            a: ReleaseRef, b: ReleaseRef) -> Response:
    diff = await run_in_threadpool(diff_releases, service, visitor.principal, a, b)
    return page(request, "release_diff.html", visitor, nav="releases", diff=diff)


@router.get("/releases/{release_id}")
async def release_page(request: Request, visitor: VisitorDep, service: ServiceDep,
                       release_id: Annotated[str, Path(max_length=200)]) -> Response:
    detail = await run_in_threadpool(get_release, service, visitor.principal, release_id)
    return page(request, "release.html", visitor, nav="releases", release=detail)


@router.post("/releases/publish")
async def publish(request: Request, visitor: VisitorDep, service: ServiceDep, settings: SettingsDep,
                  release: ReleaseField, csrf: CsrfField = None) -> Response:
    check_csrf(request, visitor, csrf)
    require_manager(visitor, settings)
    registry = service.context.releases
    previous = registry.current_id()
    moved = await run_in_threadpool(registry.publish, release, reason="publish")
    log.info("release %s published from the web by %s (key %s); current was %s",
             moved.id, visitor.principal.id, visitor.session.key_id if visitor.session else "-", previous)
    return RedirectResponse(f"/releases?published={moved.id}", status_code=303, headers=SECURITY_HEADERS)


@router.post("/releases/rollback")
async def rollback(request: Request, visitor: VisitorDep, service: ServiceDep, settings: SettingsDep,
                   to: Annotated[str, Form(max_length=80, pattern=OPTIONAL_RELEASE_REF)] = "",
                   csrf: CsrfField = None) -> Response:
    check_csrf(request, visitor, csrf)
    require_manager(visitor, settings)
    target = to or None  # blank: the release that was current before this one
    registry = service.context.releases
    previous = registry.current_id()
    moved = await run_in_threadpool(registry.rollback, target)
    log.info("releases rolled back from the web by %s (key %s): current %s → %s",
             visitor.principal.id, visitor.session.key_id if visitor.session else "-", previous, moved.id)
    return RedirectResponse(f"/releases?rolled_back={moved.id}", status_code=303, headers=SECURITY_HEADERS)

