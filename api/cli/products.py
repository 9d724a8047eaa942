"""`meshrag products …`: list, show, validate, scaffold."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from api.cli.common import RootsOption, console, domain_errors, err_console, mesh_roots, print_json
from indexing.pii import ner_model_problem, policy_entities
from knowledge.catalog import Catalog, product_details, product_summary
from knowledge.scaffold import scaffold_product

app = typer.Typer(help="Browse, validate and create knowledge products.", no_args_is_help=True)

_FRESH_STYLE = {"fresh": "green", "stale": "bold red", "unknown": "yellow"}


@app.command("list")
def list_products(
    roots: list[Path] = RootsOption,
    domain: str | None = typer.Option(None, help="Only this domain."),
    owner: str | None = typer.Option(None, help="Owner username, owner name or team."),
    tag: str | None = typer.Option(None, help="Only products with this tag."),
    classification: str | None = typer.Option(None, help="public, internal, confidential or restricted."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """List valid products with owner, classification, documents and freshness."""
    with domain_errors():
        catalog = Catalog.load(mesh_roots(roots))
    rows = [product_summary(p) for p in catalog.filter(domain=domain, owner=owner, tag=tag, classification=classification)]
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{len(rows)} knowledge products", show_lines=False)
    table.add_column("id", no_wrap=True)
    for col in ("version", "owner", "classification", "docs", "freshness"):
        table.add_column(col)
    for r in rows:
        f = r["freshness"]
        table.add_row(r["id"], r["version"], r["owner"], r["classification"], str(r["documents"]),
                      f"[{_FRESH_STYLE[f['status']]}]{f['status']}[/] ({f['age_days']:.0f}/{f['sla_days']:.0f} d)"
                      if f["age_days"] is not None else f["status"])
    console.print(table)
    if catalog.invalid:
        err_console.print(f"[yellow]{len(catalog.invalid)} product folder(s) are invalid; run `meshrag products validate`.[/]")


@app.command("show")
def show_product(
    product_id: str = typer.Argument(..., help="Product id, e.g. customer.subscription-metrics"),
    roots: list[Path] = RootsOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one product's contract summary, owner, freshness and documents."""
    with domain_errors():
        product = Catalog.load(mesh_roots(roots)).get(product_id)
    d = product_details(product)
    if as_json:
        print_json(d)
        return
    f = d["freshness"]
    console.print(f"[bold]{d['name']}[/] ({d['id']}) v{d['version']} — {d['status']}")
    console.print(f"  owner: {d['owner']} ({d['owner_username']}), team {d['team']}")
    console.print(f"  classification: {d['classification']}; read roles: {', '.join(d['read_roles'])}; PII policy: {d['pii_policy']}")
    console.print(f"  freshness: [{_FRESH_STYLE[f['status']]}]{f['status']}[/], last update {f['last_update']} "
                  f"({f['source']}), SLA {f['sla_days']:.0f} days; retention {d['retention_days']} days")
    console.print(f"  purpose: {d['purpose']}")
    console.print(f"  tags: {', '.join(d['tags'])}")
    console.print(f"  documents ({d['documents']}):")
    for doc in d["document_ids"]:
        console.print(f"    {doc}")


@app.command("validate")
def validate(
    roots: list[Path] = typer.Argument(None, help="Mesh roots to validate (default: the configured ones)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Validate every product under the roots; exit 1 when any product is invalid or has a PII policy the
    scanner here cannot keep."""
    with domain_errors():
        catalog = Catalog.load(mesh_roots(roots))
    unkept = _unkept_pii_policies(catalog)
    if as_json:
        print_json({
            "valid": [p.id for p in catalog if p.id not in unkept],
            "invalid": {str(folder): [vars(pr) for pr in problems] for folder, problems in catalog.invalid.items()},
            "pii_policy_not_kept": unkept,
        })
    else:
        for p in catalog:
            if p.id in unkept:
                console.print(f"[bold red]✗ PII policy cannot be kept[/] {p.id}: {unkept[p.id]}")
            else:
                console.print(f"[green]✓ valid[/]   {p.id}  ({len(p.documents())} documents)")
        for folder, problems in catalog.invalid.items():
            console.print(f"[bold red]✗ invalid[/] {folder}")
            for pr in problems:
                console.print(f"    {pr.file}: [bold]{pr.field}[/]: {pr.message}\n      [cyan]fix:[/] {pr.hint}")
        console.print(f"{len(catalog) - len(unkept)} valid, {len(catalog.invalid)} invalid"
                      + (f", {len(unkept)} with a PII policy the scanner cannot keep" if unkept else ""))
    if catalog.invalid or unkept:
        raise typer.Exit(1)


def _unkept_pii_policies(catalog: Catalog) -> dict[str, str]:
    """Products whose piiPolicy asks for person names to be found where the NER model is not installed (the
    indexer blocks them too), each with what to do."""
    problem = ner_model_problem()
    if problem is None:
        return {}
    return {p.id: (f"{p.contract_path}: customProperties.piiPolicy '{p.pii_policy}' covers person names, which "
                   f"cannot be detected here: {problem}; or, if its sources hold no personal data, use 'reject'")
            for p in catalog if "PERSON" in policy_entities(p.pii_policy)}


@app.command("scaffold")
def scaffold(
    domain: str = typer.Argument(..., help="Domain, e.g. marketing"),
    name: str = typer.Argument(..., help="Product name, e.g. campaign-playbooks"),
    source: Path = typer.Option(..., "--from", help="Folder (or file) with the documents to copy into docs/."),
    root: Path | None = typer.Option(None, "--root", help="Mesh root to create the product in (default: the first configured root)."),
) -> None:
    """Create a product folder with a descriptor and a contract to complete (TODO markers)."""
    with domain_errors():
        target = scaffold_product(root or mesh_roots(None)[0], domain, name, source)
    console.print(f"Created {target}. Complete the TODO fields in contract.yaml and product.yaml, then run "
                  f"`meshrag products validate {target.parent.parent}`.")
