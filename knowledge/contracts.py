"""Load a product folder: validate its ODPS descriptor and ODCS contract against the standards' own
schemas, then apply meshrag's rules, and build a `KnowledgeProduct` when everything holds."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from knowledge.model import CLASSIFICATIONS, PII_POLICIES, KnowledgeProduct, TeamMember

DESCRIPTOR_FILE = "product.yaml"
CONTRACT_FILE = "contract.yaml"
ODPS_VERSION = "v1.0.0"
ODCS_VERSION = "v3.1.0"
READ_ACCESS = {"read", "readwrite", "read-write"}
DISCOVERABLE_BY = "discoverableBy"  # customProperties entry: who may see the catalog facts without reading

_UNITS: dict[str, float] = {
    "h": 1 / 24, "hour": 1 / 24, "hours": 1 / 24,
    "d": 1, "day": 1, "days": 1,
    "w": 7, "week": 7, "weeks": 7,
    "m": 30, "month": 30, "months": 30,
    "y": 365, "year": 365, "years": 365,
}
ID_PART = re.compile(r"^[a-z][a-z0-9-]*$")  # a domain or product folder name


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a product: where (file + field path), what, and how to fix it."""

    file: str
    field: str
    message: str
    hint: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message} (fix: {self.hint})"


@cache
def odps_schema() -> dict[str, Any]:
    """The ODPS v1.0.0 JSON schema, as shipped by the `dataproduct-cli` package."""
    text = resources.files("dataproduct").joinpath("schemas", "odps-1.0.0.schema.json").read_text("utf-8")
    return json.loads(text)


@cache
def odcs_schema() -> dict[str, Any]:
    """The ODCS JSON schema shipped with `open-data-contract-standard` (accepts apiVersion v3.1.0)."""
    text = resources.files("open_data_contract_standard").joinpath("schema.json").read_text("utf-8")
    return json.loads(text)


def _field_path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(document)"


def _read_yaml(path: Path, label: str, problems: list[Problem]) -> dict[str, Any] | None:
    if not path.is_file():
        problems.append(Problem(str(path), "(file)", f"{label} is missing",
                                f"create {path.name} (run `meshrag products scaffold` for a template)"))
        return None
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problems.append(Problem(str(path), "(document)", f"YAML does not parse at {where}: "
                                f"{getattr(exc, 'problem', exc)}", "fix the YAML syntax at that position "
                                "(indentation, a missing colon, an unclosed quote)"))
        return None
    except UnicodeDecodeError:
        problems.append(Problem(str(path), "(file)", "file is not UTF-8 text", "save the file as UTF-8"))
        return None
    if not isinstance(data, dict):
        problems.append(Problem(str(path), "(document)", "top level is not a mapping",
                                "the file must be a YAML mapping of fields (key: value)"))
        return None
    return data


def _schema_problems(path: Path, data: dict[str, Any], schema: dict[str, Any], standard: str) -> list[Problem]:
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    out = []
    for err in sorted(validator.iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.message)):
        if err.validator == "required":
            hint = f"add the field required by {standard}"
        elif err.validator == "enum":
            hint = f"use one of {err.validator_value}"
        elif err.validator == "additionalProperties":
            hint = f"remove or rename the field; {standard} does not define it here"
        else:
            hint = f"make the value match {standard} ({err.validator}: {err.validator_value!r})"
        out.append(Problem(str(path), _field_path(err.absolute_path), err.message, hint))
    return out


def _custom(data: dict[str, Any], name: str) -> tuple[int, Any] | None:
    for i, item in enumerate(data.get("customProperties") or []):
        if isinstance(item, dict) and item.get("property") == name:
            return i, item.get("value")
    return None


def _is_todo(value: Any) -> bool:
    return isinstance(value, str) and value.strip().upper().startswith("TODO")


def _sla(data: dict[str, Any], name: str, path: Path, problems: list[Problem]) -> timedelta | None:
    for i, item in enumerate(data.get("slaProperties") or []):
        if not isinstance(item, dict) or item.get("property") != name:
            continue
        value, unit = item.get("value"), str(item.get("unit", "d")).lower()
        where = f"slaProperties[{i}]"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            problems.append(Problem(str(path), f"{where}.value", f"{name} SLA value {value!r} is not a "
                                    "positive number", "give a number of units, e.g. value: 7 with unit: d"))
            return None
        if unit not in _UNITS:
            problems.append(Problem(str(path), f"{where}.unit", f"unknown {name} SLA unit {unit!r}",
                                    f"use one of {sorted(set(_UNITS))}"))
            return None
        return timedelta(days=value * _UNITS[unit])
    problems.append(Problem(str(path), "slaProperties", f"no {name} SLA",
                            f"add an slaProperties entry: {{property: {name}, value: N, unit: d}}"))
    return None


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        dt = value
    else:
        # Not redundant on Python 3.11: fromisoformat refuses a date-only "2026-05-29Z" but takes
        # "2026-05-29+00:00", so dropping the replace would reject contracts that load today.
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))  # noqa: FURB162
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def load_product(folder: Path) -> tuple[KnowledgeProduct | None, list[Problem]]:
    """Validate one product folder. Returns the product (None when any problem was found) and every
    problem found: schema problems first, then meshrag's rules."""
    folder = folder.resolve()
    problems: list[Problem] = []
    dpath, cpath = folder / DESCRIPTOR_FILE, folder / CONTRACT_FILE
    descriptor = _read_yaml(dpath, "ODPS product descriptor", problems)
    contract = _read_yaml(cpath, "ODCS data contract", problems)
    if descriptor is not None:
        problems += _schema_problems(dpath, descriptor, odps_schema(), "ODPS v1.0.0")
        if descriptor.get("apiVersion") != ODPS_VERSION:
            problems.append(Problem(str(dpath), "apiVersion", f"descriptor apiVersion is "
                                    f"{descriptor.get('apiVersion')!r}", f"set apiVersion: {ODPS_VERSION}"))
    if contract is not None:
        problems += _schema_problems(cpath, contract, odcs_schema(), "ODCS v3.1.0")
        if contract.get("apiVersion") != ODCS_VERSION:
            problems.append(Problem(str(cpath), "apiVersion", f"contract apiVersion is "
                                    f"{contract.get('apiVersion')!r}", f"set apiVersion: {ODCS_VERSION}"))
    if descriptor is None or contract is None:
        return None, problems

    domain = folder.parent.name
    expected_id = f"{domain}.{folder.name}"
    for label, path, data in (("descriptor", dpath, descriptor), ("contract", cpath, contract)):
        if data.get("id") != expected_id:
            problems.append(Problem(str(path), "id", f"{label} id is {data.get('id')!r}, the folder says "
                                    f"{expected_id!r}", f"set id: {expected_id} (ids are <domain>.<folder name>)"))
        if data.get("domain") not in (None, domain):
            problems.append(Problem(str(path), "domain", f"domain {data.get('domain')!r} differs from the "
                                    f"folder's domain {domain!r}", f"set domain: {domain} or move the folder"))
    if not (ID_PART.match(domain) and ID_PART.match(folder.name)):
        problems.append(Problem(str(folder), "(folder)", f"{expected_id!r} is not a valid product id",
                                "use lower-case letters, digits and dashes for domain and product folders"))
    if descriptor.get("version") != contract.get("version"):
        problems.append(Problem(str(cpath), "version", f"contract version {contract.get('version')!r} differs "
                                f"from the descriptor's {descriptor.get('version')!r}",
                                "give descriptor and contract the same version"))

    owner, team_name, members = _team(contract, cpath, problems)
    classification = _custom_choice(contract, cpath, "classification", CLASSIFICATIONS, problems)
    pii_policy = _custom_choice(contract, cpath, "piiPolicy", PII_POLICIES, problems)
    freshness = _sla(contract, "freshness", cpath, problems)
    retention = _sla(contract, "retention", cpath, problems)
    roles = _read_roles(contract, cpath, problems)
    discoverable_by = _discoverable_by(contract, cpath, problems)

    desc = contract.get("description") if isinstance(contract.get("description"), dict) else {}
    ddesc = descriptor.get("description") if isinstance(descriptor.get("description"), dict) else {}
    purpose = (desc.get("purpose") or ddesc.get("purpose") or "").strip()
    if not purpose or _is_todo(purpose):
        problems.append(Problem(str(cpath), "description.purpose", "no description of purpose",
                                "say in a sentence or two what the product is for and who uses it"))

    declared = None
    found = _custom(contract, "lastUpdated")
    if found is not None:
        try:
            declared = _parse_time(found[1])
        except (TypeError, ValueError):
            problems.append(Problem(str(cpath), f"customProperties[{found[0]}].value", f"lastUpdated "
                                    f"{found[1]!r} is not an ISO 8601 time", "write e.g. 2026-05-29T17:00:00Z"))

    since = None
    if contract.get("contractCreatedTs") is not None:
        try:
            since = _parse_time(contract["contractCreatedTs"])
        except (TypeError, ValueError):
            problems.append(Problem(str(cpath), "contractCreatedTs", f"contractCreatedTs "
                                    f"{contract['contractCreatedTs']!r} is not an ISO 8601 time",
                                    "write when this version took effect, e.g. '2026-07-01T00:00:00Z'"))

    sources = _sources(descriptor, folder, dpath, problems)
    for field in ("name", "version"):
        if _is_todo(contract.get(field)) or not contract.get(field):
            problems.append(Problem(str(cpath), field, f"{field} is not filled in", f"set the product's {field}"))

    if problems:
        return None, problems
    assert owner is not None and freshness is not None and retention is not None
    product = KnowledgeProduct(
        id=expected_id, domain=domain, name=folder.name, title=str(contract.get("name")),
        version=str(contract.get("version")), status=str(contract.get("status", "active")),
        owner=owner, team=team_name, members=members, classification=classification,  # type: ignore[arg-type]
        read_roles=roles, pii_policy=pii_policy,  # type: ignore[arg-type]
        freshness_sla=freshness, retention_sla=retention, purpose=purpose,
        usage=str(desc.get("usage") or ddesc.get("usage") or ""),
        limitations=str(desc.get("limitations") or ddesc.get("limitations") or ""),
        tags=tuple(str(t) for t in (contract.get("tags") or descriptor.get("tags") or [])),
        root=folder, source_paths=sources, declared_last_update=declared, version_since=since,
        descriptor_path=dpath, contract_path=cpath, discoverable_by=discoverable_by,
    )
    if not product.documents():
        problems.append(Problem(str(dpath), "inputPorts", "the product has no readable source documents in "
                                + ", ".join(str(s) for s in sources),
                                "add .md/.txt/.html/.pdf/.jsonl/.csv files to the source folder"))
        return None, problems
    return product, problems


def _team(contract: dict[str, Any], path: Path, problems: list[Problem]
          ) -> tuple[TeamMember | None, str, tuple[TeamMember, ...]]:
    team = contract.get("team")
    if not isinstance(team, dict):
        problems.append(Problem(str(path), "team", "no owning team (ODCS v3.1.0 team object)",
                                "add team: {name: ..., members: [{username: ..., name: ..., role: owner}]}"))
        return None, "", ()
    name = str(team.get("name") or "")
    if not name or _is_todo(name):
        problems.append(Problem(str(path), "team.name", "the owning team has no name", "set team.name"))
    members = tuple(
        TeamMember(username=str(m.get("username", "")), name=str(m.get("name") or m.get("username", "")),
                   role=str(m.get("role", "")))
        for m in (team.get("members") or []) if isinstance(m, dict)
    )
    owners = [m for m in members if m.role.lower() == "owner" and m.username and not _is_todo(m.username)]
    if not owners:
        problems.append(Problem(str(path), "team.members", "no team member has role: owner",
                                "add a member with username, name and role: owner"))
        return None, name, members
    return owners[0], name, members


def _custom_choice(contract: dict[str, Any], path: Path, prop: str, allowed: tuple[str, ...],
                   problems: list[Problem]) -> str:
    found = _custom(contract, prop)
    if found is None:
        problems.append(Problem(str(path), "customProperties", f"no {prop}",
                                f"add a customProperties entry: {{property: {prop}, value: one of {list(allowed)}}}"))
        return ""
    i, value = found
    if value not in allowed:
        problems.append(Problem(str(path), f"customProperties[{i}].value", f"unknown {prop} {value!r}",
                                f"use one of {list(allowed)}"))
        return ""
    return str(value)


def _read_roles(contract: dict[str, Any], path: Path, problems: list[Problem]) -> tuple[str, ...]:
    roles = tuple(
        str(r["role"]) for r in (contract.get("roles") or [])
        if isinstance(r, dict) and r.get("role") and str(r.get("access", "")).lower() in READ_ACCESS
        and not _is_todo(r["role"])
    )
    if not roles:
        problems.append(Problem(str(path), "roles", "no role has read access",
                                "add roles: [{role: NAME, access: read}] for each group that may read the product"))
    return roles


def _discoverable_by(contract: dict[str, Any], path: Path, problems: list[Problem]) -> tuple[str, ...]:
    """customProperties `discoverableBy`: roles (a list) that may see the catalog facts without reading the
    content, or "*" for every principal, anonymous included. Absent: nobody beyond the readers."""
    found = _custom(contract, DISCOVERABLE_BY)
    if found is None:
        return ()
    i, value = found
    where = f"customProperties[{i}].value"
    fix = ("write value: [employee] (a list of the roles that may see the product's catalog facts) or "
           "value: '*' (every principal); remove the entry to keep the product hidden from non-readers")
    if value == "*":
        return ("*",)
    if not isinstance(value, list) or not value:
        problems.append(Problem(str(path), where, f"{DISCOVERABLE_BY} {value!r} is neither '*' nor a non-empty "
                                "list of roles", fix))
        return ()
    bad = [r for r in value if not isinstance(r, str) or not r.strip() or _is_todo(r)]
    if bad:
        problems.append(Problem(str(path), where, f"{DISCOVERABLE_BY} holds {', '.join(repr(r) for r in bad)}, "
                                "which is not a role name", fix))
        return ()
    return tuple(dict.fromkeys(r.strip() for r in value))


def _sources(descriptor: dict[str, Any], folder: Path, path: Path, problems: list[Problem]) -> tuple[Path, ...]:
    paths: list[Path] = []
    for i, port in enumerate(descriptor.get("inputPorts") or []):
        if not isinstance(port, dict):
            continue
        found = _custom(port, "path")
        if found is None:
            continue
        src = Path(str(found[1])).expanduser()
        src = src if src.is_absolute() else folder / src
        if not src.exists():
            problems.append(Problem(str(path), f"inputPorts[{i}].customProperties[{found[0]}].value",
                                    f"source path {src} does not exist", "point the input port at an existing "
                                    "folder or file (relative paths are relative to the product folder)"))
            continue
        paths.append(src.resolve())
    if not paths and (folder / "docs").is_dir():
        paths.append((folder / "docs").resolve())
    if not paths and not any(p.field.startswith("inputPorts") for p in problems):
        problems.append(Problem(str(path), "inputPorts", "no sources: no docs/ folder and no input port path",
                                "create docs/ or add an input port with customProperties [{property: path, value: DIR}]"))
    return tuple(paths)
