"""A product's catalog card: its descriptor and contract rendered as a document, so discovery
questions ("which product…", "who owns…", "how fresh…") are answered from catalog metadata by the same
retrieval that answers content questions, under the same access rules."""

from __future__ import annotations

from datetime import timedelta

from knowledge.model import KnowledgeProduct

CATALOG_DOCUMENT = "_catalog"


def _days(delta: timedelta) -> str:
    days = delta / timedelta(days=1)
    if days >= 365 and days % 365 == 0:
        years = int(days // 365)
        return f"{years} year{'s' if years > 1 else ''} ({int(days)} days)"
    return f"{days:g} days"


def render_card(product: KnowledgeProduct) -> str:
    """Markdown text of the card. Deterministic: the same contract gives the same bytes."""
    members = "; ".join(f"{m.name} ({m.username}, {m.role})" for m in product.members)
    declared = (f" The sources were last updated on {product.declared_last_update.date().isoformat()}."
                if product.declared_last_update else "")
    lines = [
        f"# {product.title} — catalog card",
        "",
        f"{product.title} is the knowledge product `{product.id}` in the {product.domain} domain, version "
        f"{product.version}, status {product.status}.",
        "",
        "## Purpose",
        "",
        f"{product.purpose}",
        "",
        *([f"Usage: {product.usage}", ""] if product.usage else []),
        *([f"Limitations: {product.limitations}", ""] if product.limitations else []),
        "## Owner and team",
        "",
        f"The {product.title} product is owned by {product.owner.name} ({product.owner.username}) of the "
        f"{product.team} team. Team members: {members}.",
        "",
        "## Access and classification",
        "",
        f"{product.title} is classified {product.classification}. Roles with read access: "
        f"{', '.join(product.read_roles)}. PII policy: {product.pii_policy}.",
        "",
        "## Service levels and freshness",
        "",
        f"The freshness SLA of {product.title} is {_days(product.freshness_sla)}: its sources must be updated "
        f"at least that often or the product is reported stale.{declared} Retention SLA: "
        f"{_days(product.retention_sla)}.",
        "",
        "## Tags",
        "",
        ", ".join(product.tags) or "none",
        "",
    ]
    return "\n".join(lines)
