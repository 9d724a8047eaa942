"""A product's catalog facts, typed, each with where it is written: the descriptor or contract file
(relative to the product root) and the character span of its value in that file, from PyYAML's composed
nodes (`yaml.compose`: `start_mark.index` / `end_mark.index`, character offsets in the file's text).

A fact is read from the same field `knowledge.contracts.load_product` reads it from (the contract first,
the descriptor where the contract leaves it out), so its span points at the text the product was built
from. Freshness status is computed by `knowledge.catalog.freshness` (one rule) and stated in words."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import yaml

from knowledge.catalog import Freshness, freshness, newest_source_update
from knowledge.contracts import CONTRACT_FILE, DESCRIPTOR_FILE
from knowledge.model import KnowledgeProduct, Principal

FACTS_VERSION = "1"  # bump when what a fact is or where its span points changes

FactName = Literal["id", "title", "domain", "owner", "contact", "team", "members", "classification",
                   "read_roles", "pii_policy", "freshness_sla", "retention_sla", "last_update", "status",
                   "version", "purpose", "usage", "limitations", "tags"]

# What a principal who may discover but not read a product is shown of it (knowledge.catalog.product_facts):
# id (and the domain it names), title, purpose, owner, team, contact, classification, freshness.
DISCOVERABLE_FACTS: frozenset[str] = frozenset({"id", "title", "domain", "purpose", "owner", "contact", "team",
                                                 "classification", "freshness_sla", "last_update"})

PII_POLICY_WORDS = {
    "redact": "personal data in its sources is redacted when they are indexed",
    "reject": "a source holding personal data is refused at indexing",
    "allow": "its sources are indexed as written",
}


@dataclass(frozen=True)
class Fact:
    """One catalog fact: its value in words, the file and span it is written at, and the field path."""

    name: str  # a FactName
    value: str
    file: str  # product.yaml or contract.yaml, relative to the product root
    field: str  # e.g. "team.members[0].name"
    start: int  # character span of the value in the file's text
    end: int


@dataclass(frozen=True)
class SourceFile:
    """A descriptor or contract as the facts were read from it: its name, text and the text's sha256."""

    name: str
    text: str
    sha256: str


@dataclass(frozen=True)
class ProductFactSheet:
    """Every fact of one product, by name (`members` and `tags` may hold several facts)."""

    product: KnowledgeProduct
    facts: dict[str, tuple[Fact, ...]]
    files: dict[str, SourceFile]

    def get(self, name: str) -> Fact | None:
        found = self.facts.get(name, ())
        return found[0] if found else None

    def all(self, name: str) -> tuple[Fact, ...]:
        return self.facts.get(name, ())

    def visible_to(self, principal: Principal, name: str) -> bool:
        """May `principal` be told fact `name` of this product?"""
        return principal.can_read(self.product) or (name in DISCOVERABLE_FACTS
                                                     and principal.can_discover(self.product))


# ------------------------------------------------------------------------------------------- reading
def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v
    return None


def _span(node: yaml.Node) -> tuple[int, int]:
    """The value's span: a quoted scalar without its quotes, anything else as written."""
    start, end = node.start_mark.index, node.end_mark.index
    if isinstance(node, yaml.ScalarNode) and node.style in ("'", '"'):
        start, end = start + 1, end - 1
    return start, end


def _items(node: yaml.Node | None) -> list[yaml.Node]:
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _by_property(node: yaml.Node | None, prop: str) -> tuple[int, yaml.Node] | None:
    """(index, item) of the first `{property: prop, ...}` item of a list node."""
    for i, item in enumerate(_items(node)):
        name = _child(item, "property")
        if isinstance(name, yaml.ScalarNode) and name.value == prop:
            return i, item
    return None


class _Reader:
    def __init__(self, product: KnowledgeProduct) -> None:
        self.product = product
        self.texts: dict[str, str] = {}
        self.trees: dict[str, yaml.Node | None] = {}
        for name, path in ((CONTRACT_FILE, product.contract_path), (DESCRIPTOR_FILE, product.descriptor_path)):
            # A product kept serving while its files fail validation (`problem` set) may have a file that no
            # longer reads: its facts then have no span there (the catalog reuses the last sheet it read).
            try:
                text = Path(path).read_text("utf-8")
                tree = yaml.compose(text)
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                text, tree = "", None
            self.texts[name] = text
            self.trees[name] = tree

    def fact(self, name: str, value: str, file: str, field: str, node: yaml.Node) -> Fact:
        start, end = _span(node)
        return Fact(name, value, file, field, start, end)

    def path(self, *keys: str, files: tuple[str, ...] = (CONTRACT_FILE, DESCRIPTOR_FILE)
             ) -> tuple[str, yaml.Node] | None:
        """The first file (in `files` order) that has a non-empty value at `keys`, and that node."""
        for file in files:
            node = self.trees[file]
            for key in keys:
                node = _child(node, key)
            if node is not None and not (isinstance(node, yaml.ScalarNode) and node.value == ""):
                return file, node
        return None


def _days_words(delta: timedelta) -> str:
    """7 days, 3 years, 12 hours: the SLA as a person says it."""
    days = delta / timedelta(days=1)
    if days >= 365 and days % 365 == 0:
        n = int(days // 365)
        return f"{n} year{'s' if n != 1 else ''}"
    if days < 1:
        hours = days * 24
        return f"{hours:g} hour{'s' if hours != 1 else ''}"
    return f"{days:g} day{'s' if days != 1 else ''}"


def read_facts(product: KnowledgeProduct) -> ProductFactSheet:
    """The product's facts with their spans, read from its descriptor and contract files."""
    r = _Reader(product)
    p = product
    facts: dict[str, list[Fact]] = {}

    def add(fact: Fact | None) -> None:
        if fact is not None:
            facts.setdefault(fact.name, []).append(fact)

    def simple(name: str, value: str, *keys: str) -> None:
        found = r.path(*keys)
        if found is not None:
            add(r.fact(name, value, found[0], ".".join(keys), found[1]))

    if r.trees[CONTRACT_FILE] is None and r.trees[DESCRIPTOR_FILE] is None:
        return ProductFactSheet(product, {}, {})
    simple("id", p.id, "id")
    simple("title", p.title, "name")
    simple("version", p.version, "version")
    simple("status", p.status, "status")
    simple("purpose", p.purpose, "description", "purpose")
    simple("usage", p.usage, "description", "usage")
    simple("limitations", p.limitations, "description", "limitations")
    # The domain is the id's first part (the folder the product lives in); where the files also state it:
    found = r.path("domain")
    if found is not None:
        add(r.fact("domain", p.domain, found[0], "domain", found[1]))
    elif "id" in facts:
        id_fact = facts["id"][0]
        add(Fact("domain", p.domain, id_fact.file, "id", id_fact.start, id_fact.start + len(p.domain)))

    team = r.path("team", files=(CONTRACT_FILE,))
    if team is not None:
        file, node = team
        name = _child(node, "name")
        if name is not None:
            add(r.fact("team", p.team, file, "team.name", name))
        for i, member in enumerate(_items(_child(node, "members"))):
            username, person = _child(member, "username"), _child(member, "name")
            if not isinstance(username, yaml.ScalarNode):
                continue
            where = f"team.members[{i}]"
            if username.value == p.owner.username:
                if "owner" not in facts:
                    add(r.fact("owner", p.owner.name, file, f"{where}.name", person or username))
                    add(r.fact("contact", p.owner.username, file, f"{where}.username", username))
                continue
            known = next((m for m in p.members if m.username == username.value), None)
            if known is not None:
                add(r.fact("members", known.name, file, f"{where}.name" if person else f"{where}.username",
                           person or username))

    for i, role in enumerate(_items(_child(r.trees[CONTRACT_FILE], "roles"))):
        name = _child(role, "role")
        if isinstance(name, yaml.ScalarNode) and name.value in p.read_roles:
            add(r.fact("read_roles", name.value, CONTRACT_FILE, f"roles[{i}].role", name))

    custom = _child(r.trees[CONTRACT_FILE], "customProperties")
    for name, prop, value in (("classification", "classification", p.classification),
                              ("pii_policy", "piiPolicy", p.pii_policy)):
        hit = _by_property(custom, prop)
        if hit is not None and (node := _child(hit[1], "value")) is not None:
            add(r.fact(name, value, CONTRACT_FILE, f"customProperties[{hit[0]}].value", node))
    hit = _by_property(custom, "lastUpdated")
    if hit is not None and (node := _child(hit[1], "value")) is not None and p.declared_last_update:
        add(r.fact("last_update", p.declared_last_update.date().isoformat(), CONTRACT_FILE,
                   f"customProperties[{hit[0]}].value", node))

    slas = _child(r.trees[CONTRACT_FILE], "slaProperties")
    for name, prop, delta in (("freshness_sla", "freshness", p.freshness_sla),
                              ("retention_sla", "retention", p.retention_sla)):
        hit = _by_property(slas, prop)
        if hit is None or (value := _child(hit[1], "value")) is None:
            continue
        unit = _child(hit[1], "unit")
        start = value.start_mark.index
        end = max(value.end_mark.index, unit.end_mark.index if unit is not None else 0)
        add(Fact(name, _days_words(delta), CONTRACT_FILE, f"slaProperties[{hit[0]}]", start, end))

    tags = r.path("tags")
    if tags is not None:
        for i, tag in enumerate(_items(tags[1])):
            add(r.fact("tags", str(tag.value), tags[0], f"tags[{i}]", tag))

    files = {name: SourceFile(name, text, hashlib.sha256(text.encode("utf-8")).hexdigest())
             for name, text in r.texts.items() if r.trees[name] is not None}
    return ProductFactSheet(product, {k: tuple(v) for k, v in facts.items()}, files)


# ------------------------------------------------------------------------------------------- status
def freshness_words(state: Freshness, sla: timedelta) -> str:
    """The computed freshness status in words, e.g. "stale: last updated 2026-05-29, 190 days ago,
    against a freshness SLA of 30 days"."""
    sla_words = _days_words(sla)
    if state.status == "unknown" or state.last_update is None or state.age_days is None:
        return (f"freshness unknown: no last update is declared and no source file is dated "
                f"(freshness SLA of {sla_words})")
    when = state.last_update.date().isoformat()
    age = f"{int(state.age_days)} day{'s' if int(state.age_days) != 1 else ''} ago"
    how = "declared in its contract" if state.source == "declared" else "newest source file"
    if state.status == "stale":
        return f"stale: last updated {when} ({how}), {age}, against a freshness SLA of {sla_words}"
    return f"fresh: last updated {when} ({how}), {age}, within its freshness SLA of {sla_words}"


def status_of(product: KnowledgeProduct, now: datetime | None = None, *,
              source_update: Callable[[KnowledgeProduct], datetime | None] = newest_source_update
              ) -> tuple[Freshness, str]:
    """The catalog's freshness of the product (knowledge.catalog.freshness) and its status in words."""
    state = freshness(product, now or datetime.now(UTC), source_update=source_update)
    return state, freshness_words(state, product.freshness_sla)


def sla_words(delta: timedelta) -> str:
    return _days_words(delta)


def iter_facts(sheet: ProductFactSheet) -> Iterator[Fact]:
    for found in sheet.facts.values():
        yield from found
