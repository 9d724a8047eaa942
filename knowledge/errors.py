"""Domain errors. Each message says what went wrong and what to do about it; `api/` maps them to HTTP."""

from __future__ import annotations


class MeshragError(Exception):
    """Base of every error meshrag raises on purpose."""


class ContractError(MeshragError):
    """A product descriptor or contract is missing, unreadable or breaks a rule."""


class ProductNotFound(MeshragError):
    """No product with that id (among those the caller may read)."""


class PolicyViolation(MeshragError):
    """A governance policy (PII, classification, gate) blocks an operation."""


class AccessDenied(MeshragError):
    """The principal may not read what it asked for."""


class NotAllowed(MeshragError):
    """The caller may see the thing but its roles do not allow this operation on it (publishing a
    release, say). Never for reading: what a caller may not read is reported as not found."""


class ReleaseNotFound(MeshragError):
    """No release with that id or alias."""


class StoreUnavailable(MeshragError):
    """The vector store cannot be reached right now; retrying later may succeed."""


class ConfigError(MeshragError):
    """Settings or arguments are inconsistent."""


class CollectionNotFound(MeshragError):
    """A vector collection (embedding product version) is not in the store."""


class SourceError(MeshragError):
    """A source document cannot be read or parsed."""


class ProvenanceNotFound(MeshragError):
    """No provenance record with that request id (among those the caller may read)."""


class ProvenanceCorrupt(MeshragError):
    """The provenance log cannot be read as it was written; `meshrag provenance verify` says where."""
