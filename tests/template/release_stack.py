"""What tests/tests/release.rs needs from Python: the release packaged from
this build's binaries, what a stack of it creates, the event CloudFormation
sends a custom resource of it, and a zip unpacked as Lambda unpacks it.

    python release_stack.py package BINARIES OUT
    python release_stack.py plan TEMPLATE Name=Value ...
    python release_stack.py event TEMPLATE LOGICAL_ID CONTEXT_JSON
    python release_stack.py unzip ZIP DIR

`package` runs scripts/release.py's own packaging (the code `make release`
runs) on the host's binaries: the release's zips are arm64, this machine may
not be, and building arm64 release binaries in `make test` would take a cold
CI machine most of its time budget. Everything else in the release (the
template, the code locations, the zips' format) is the release's own.
"""

import base64
import hashlib
import json
import os
import platform
import stat
import sys
import zipfile
from pathlib import Path

from evaluate import conditions, value_of
from render import release_module

INTRINSICS = {"Ref", "Fn::GetAtt", "Fn::If", "Fn::Sub", "Fn::Join", "Fn::Select", "Fn::Split"}
PSEUDO = ("AWS::Region", "AWS::AccountId", "AWS::StackName", "AWS::StackId", "AWS::Partition", "AWS::URLSuffix")
HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def package(binaries: Path, out: Path) -> dict:
    release = release_module()
    arch = HOST_ARCH[platform.machine().lower()]
    sums = release.package(binaries, arch, out)
    return {"version": release.version(), "arch": arch, "files": sums}


def parameter_values(template: dict, given: dict) -> dict:
    declared = template["Parameters"]
    unknown = set(given) - set(declared)
    assert not unknown, f"not parameters of the release: {sorted(unknown)}"
    missing = [k for k, v in declared.items() if "Default" not in v and k not in given]
    assert not missing, f"no value for {missing}"
    return {k: str(given.get(k, v.get("Default", ""))) for k, v in declared.items()}


def plan(template: dict, given: dict) -> dict:
    """The parameters to pass and the resources (logical id to type) a stack
    with them creates, by the template's own conditions."""
    values = parameter_values(template, given)
    held = conditions(template, values)
    resources = {
        k: v["Type"] for k, v in template["Resources"].items() if "Condition" not in v or held[v["Condition"]]
    }
    functions = {k: v for k, v in resources.items() if v == "AWS::Lambda::Function"}
    return {"parameters": values, "resources": resources, "functions": sorted(functions)}


def event(template: dict, logical: str, context: dict) -> dict:
    """The Create event CloudFormation sends the custom resource `logical`:
    its properties evaluated for the stack's parameters, with the physical
    ids and attributes of the resources it refers to (`context["attributes"]`,
    "Logical.Attribute" or "Logical" for Ref, from the stack)."""
    values = parameter_values(template, context["parameters"])
    held = conditions(template, values)
    attributes = {tuple(k.split(".", 1)) if "." in k else (k, "Ref"): v for k, v in context["attributes"].items()}
    resource = template["Resources"][logical]

    def evaluate(node):
        if isinstance(node, dict) and len(node) == 1 and next(iter(node)) in INTRINSICS:
            pseudo = {p for p in PSEUDO if p in json.dumps(node)}
            assert not pseudo, f"{logical}: the test does not evaluate pseudo parameters ({pseudo})"
            return value_of(node, values, template, held, attributes)
        if isinstance(node, dict):
            out = {k: evaluate(v) for k, v in node.items()}
            return {k: v for k, v in out.items() if v is not None}
        if isinstance(node, list):
            return [evaluate(n) for n in node]
        # CloudFormation sends every scalar property as a string.
        return str(node) if isinstance(node, (int, float)) else node

    properties = evaluate(resource["Properties"])
    return {
        "RequestType": "Create",
        "ServiceToken": properties["ServiceToken"],
        "ResponseURL": context["response_url"],
        "StackId": context["stack_id"],
        "RequestId": context["request_id"],
        "LogicalResourceId": logical,
        "ResourceType": resource["Type"],
        "ResourceProperties": properties,
    }


def unzip(archive: Path, out: Path) -> dict:
    """Extracts `archive` into `out` with the modes its entries carry (as
    Lambda does: a bootstrap without its executable bit does not start);
    returns the entries and the archive's SHA-256 as Lambda gives it
    (CodeSha256: base64)."""
    names = []
    with zipfile.ZipFile(archive) as z:
        bad = z.testzip()
        assert bad is None, f"{archive}: CRC mismatch in {bad}"
        for entry in z.infolist():
            path = Path(z.extract(entry, out))
            mode = entry.external_attr >> 16
            if stat.S_ISREG(mode):
                os.chmod(path, stat.S_IMODE(mode))
            names.append(entry.filename)
    digest = base64.b64encode(hashlib.sha256(archive.read_bytes()).digest()).decode()
    return {"entries": names, "sha256_base64": digest}


def main(argv: list) -> int:
    command, args = argv[0], argv[1:]
    if command == "package":
        out = package(Path(args[0]), Path(args[1]))
    elif command == "plan":
        out = plan(json.loads(Path(args[0]).read_text()), dict(a.split("=", 1) for a in args[1:]))
    elif command == "event":
        out = event(json.loads(Path(args[0]).read_text()), args[1], json.loads(args[2]))
    elif command == "unzip":
        out = unzip(Path(args[0]), Path(args[1]))
    else:
        print(__doc__)
        return 2
    print(json.dumps(out, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
