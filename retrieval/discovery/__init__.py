"""Discovery questions answered from the catalog's typed facts (knowledge.facts), as one stage of the ask
pipeline: a question about products (which product, who owns it, whom to contact, how fresh, classified
how, who may read it, SLAs, domain, PII policy, version) or across products (which are stale, what a
team or person owns, which confidential ones I can read, which are in a domain, which I can read) gets
plain sentences of facts, each citing the descriptor or contract span it states. Anything else returns
None and the pipeline's answerer answers as before.

recognise (what is asked, catalog linking, filters) · words (function words, word forms `same_word`, typo
respelling) · meaning (`ProductCards`: linking by meaning) · filters (comparisons: classification above /
below, SLA periods, found but not readable) · cache (`CatalogFacts`: fact sheets and linking vocabularies,
read once per catalog) · answer (`DiscoveryAnswerer`: sentences and their fact citations).

Recognition is two small rule sets over the catalog's own vocabulary, never over our golden questions:

    asks      = the facts the question asks for (cue patterns below; a word a cue spells out never links a
                product, a word in a cue's gap does: "where are the *support* runbooks kept")
    products  = catalog linking: each question word (function, cue and product-noun words dropped) that
                matches a product's metadata adds  field weight × log(1 + visible / products matching)
                to it; the best score wins, ties broken by retrieval rank. "Which product …" questions
                fuse the catalog's ranking with retrieval's; with no catalog link, only a retrieved product
                whose hits hold every topic word of the question. A fact of one product needs a catalog
                link, or a catalog card clearly nearest the question in meaning (MiniLM cosine, a clear
                best; it also overrules a link by one purpose word): retrieval alone never says which
                product a question means. A misspelt cue word ("mantains") is read as the cue first.
    scope     = one product, when the question refers to a product (a product noun, a title word, or it
                asks whom to contact about a topic); all visible products through filters (stale,
                classification — also "above internal", "the most sensitive" —, SLA periods — "refreshed
                at least weekly", "kept longer than three years" —, domain, team or person, readable by
                me or found but not readable), when it asks about products in
                the plural, or says "anything / any of / what … stuff / what can I read" with such a filter
                and names no product

A pinned search (the version stage pinned an older version) is no discovery question: the facts are today's.

A principal sees only products it may discover, and of a product it cannot read only the facts in
`knowledge.facts.DISCOVERABLE_FACTS`; products it may neither read nor discover take no part at all (not
in linking, not in counts).
"""

from retrieval.discovery.answer import (
    ANSWERER,
    FACT_CHUNK_VERSION,
    NAME,
    VERSION,
    DiscoveryAnswerer,
    cites_discoverable_fact,
    fact_citation,
)
from retrieval.discovery.cache import NAME_WEIGHT, TAG_WEIGHT, TEXT_WEIGHT, CatalogFacts
from retrieval.discovery.recognise import (
    ASKS,
    PLURAL,
    PRODUCT_NOUNS,
    Person,
    Recognised,
    asked,
    link_products,
    recognise,
)

__all__ = [
    "ANSWERER", "ASKS", "FACT_CHUNK_VERSION", "NAME", "NAME_WEIGHT", "PLURAL", "PRODUCT_NOUNS", "TAG_WEIGHT",
    "TEXT_WEIGHT", "VERSION", "CatalogFacts", "DiscoveryAnswerer", "Person", "Recognised", "asked",
    "cites_discoverable_fact", "fact_citation", "link_products", "recognise",
]
