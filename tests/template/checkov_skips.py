"""Lists every checkov check the templates skip, with its reason (each
resource's Metadata.checkov.skip), so a reader finds them in one place:
`.venv-lint/bin/python tests/template/checkov_skips.py`."""

from pathlib import Path

from samcli.yamlhelper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = [ROOT / "template.yaml", *sorted((ROOT / "examples").glob("*/template.yaml"))]


def skips(path: Path) -> list:
    """(resource, check id, reason) for each skipped check of one template."""
    template = yaml_parse(path.read_text())
    out = []
    resources = dict(template.get("Resources", {}))
    for key in [k for k in resources if k.startswith("Fn::ForEach::")]:
        resources.update(resources.pop(key)[2])  # a loop's fragment
    for name, resource in resources.items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            out.append((name, skip.get("id", ""), skip.get("comment", "")))
    return out


def main() -> None:
    for path in TEMPLATES:
        print(f"{path.relative_to(ROOT)}:")
        for name, check, reason in skips(path):
            print(f"  {check} on {name}: {reason}")


if __name__ == "__main__":
    main()
