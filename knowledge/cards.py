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
    """Markdown text of the card, in two sections (what and who; terms). Its title names the product's
    topics, so every chunk's breadcrumb carries them; sentences are specific to the product, so the
    six cards do not all match generic governance questions. Deterministic for the same contract."""
    topics = ", ".join(product.tags)
    members = "; ".join(f"{m.name} ({m.role})" for m in product.members if m.username != product.owner.username)
    declared = (f" Its sources were last updated on {product.declared_last_update.date().isoformat()}."
                if product.declared_last_update else "")
    what = [
        f"# {product.title} ({topics}) — catalog card",
        "",
        "## What it is and who owns it",
        "",
        (f"{product.title} (`{product.id}`, {product.domain} domain, version {product.version}) is the knowledge "
         f"product for: {product.purpose}"),
        *([f"Usage: {product.usage}"] if product.usage else []),
        *([f"Limitations: {product.limitations}"] if product.limitations else []),
        f"{product.title} is owned by {product.owner.name} ({product.owner.username}) of the {product.team} team"
        + (f"; other members: {members}." if members else "."),
        "",
        "## Access, freshness and retention",
        "",
        (f"{product.title} is classified {product.classification}; roles with read access: "
         f"{', '.join(product.read_roles)}; PII policy: {product.pii_policy}."),
        (f"The freshness SLA of {product.title} is {_days(product.freshness_sla)}.{declared} "
         f"Its retention SLA is {_days(product.retention_sla)}."),
        "",
    ]
    return "\n".join(what)
