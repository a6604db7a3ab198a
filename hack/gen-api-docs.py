#!/usr/bin/env python3
"""docs/api.md from the CRDs in crds/: every field of spec and status with its type, default,
whether it is required, and its description, plus the CEL rules and the printer columns.

    hack/gen-api-docs.py            rewrite docs/api.md
    hack/gen-api-docs.py --check    exit 1 when docs/api.md differs from what the CRDs say
"""
import json
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRDS = ["datashare.io_dataproducts.yaml", "datashare.io_datasharingpolicies.yaml"]
OUT = ROOT / "docs" / "api.md"


def one_line(text):
    return " ".join((text or "").split()).replace("|", "\\|")


def type_of(node):
    t = node.get("type", "")
    if t == "array":
        return "[]" + type_of(node.get("items", {}))
    if node.get("enum"):
        return t + " (" + ", ".join(str(e) for e in node["enum"]) + ")"
    if t == "object" and "additionalProperties" in node:
        return "map[string]" + type_of(node["additionalProperties"])
    return t


def fields(node, path, rows, rules):
    required = set(node.get("required", []))
    for rule in node.get("x-kubernetes-validations", []):
        rules.append((path, one_line(rule.get("message") or rule.get("rule"))))
    for name, child in node.get("properties", {}).items():
        p = f"{path}.{name}"
        default = child.get("default")
        rows.append((p, type_of(child), "" if default is None else f"`{json.dumps(default)}`",
                     "yes" if name in required else "", one_line(child.get("description"))))
        fields(child, p, rows, rules)
        items = child.get("items")
        if items and items.get("properties"):
            fields(items, p + "[]", rows, rules)
            for rule in items.get("x-kubernetes-validations", []):
                rules.append((p + "[]", one_line(rule.get("message") or rule.get("rule"))))


def render():
    out = ["# API reference (datashare.io/v1alpha1)", "",
           "Generated from the CRDs in `crds/` by `hack/gen-api-docs.py` (do not edit; the test",
           "`api_docs_test` fails when this page and the CRDs differ). `kubectl explain dataproduct.spec`",
           "and `kubectl explain dsp.spec` print the same descriptions from a cluster.", ""]
    for name in CRDS:
        crd = yaml.safe_load((ROOT / "crds" / name).read_text())
        names = crd["spec"]["names"]
        version = crd["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        out += [f"## {names['kind']}", "",
                f"Short name `{', '.join(names.get('shortNames', []))}`, categories `{', '.join(names.get('categories', []))}`, "
                f"{crd['spec']['scope'].lower()}. {one_line(schema.get('description'))}", ""]
        cols = version.get("additionalPrinterColumns", [])
        if cols:
            out += ["`kubectl get` columns: " + ", ".join(
                f"{c['name']}" + (" (wide)" if c.get("priority", 0) > 0 else "") for c in cols) + ".", ""]
        for part in ("spec", "status"):
            rows, rules = [], []
            fields(schema["properties"][part], part, rows, rules)
            out += [f"### {names['kind']}.{part}", "", "| field | type | default | required | description |",
                    "|---|---|---|---|---|"]
            out += [f"| `{p}` | {t} | {d} | {r} | {desc} |" for p, t, d, r, desc in rows]
            out.append("")
            if rules:
                out += [f"Rules checked at admission ({names['kind']}.{part}):", ""]
                out += [f"- `{p}`: {m}" for p, m in rules]
                out.append("")
    return "\n".join(out)


def main():
    text = render()
    if sys.argv[1:] == ["--check"]:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} differs from the CRDs: run hack/gen-api-docs.py", file=sys.stderr)
            return 1
        return 0
    if sys.argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
