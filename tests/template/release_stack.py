"""What tests/tests/release.rs needs from Python: the release packaged from
this build's binaries, what a stack of it creates, the event CloudFormation
sends a custom resource of it, and a zip unpacked as Lambda unpacks it.

    python release_stack.py package BINARIES OUT
    python release_stack.py plan|plan-stack-set TEMPLATE Name=Value ...
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


def plan(template: dict, given: dict, stack_set: bool = False) -> dict:
    """The parameters to pass, the resources (logical id to type) a stack
    with them creates, by the template's own conditions, and the template to
    deploy into moto with what was changed for it."""
    values = parameter_values(template, given)
    held = conditions(template, values)
    resources = {
        k: v["Type"] for k, v in template["Resources"].items() if "Condition" not in v or held[v["Condition"]]
    }
    functions = {k: v for k, v in resources.items() if v == "AWS::Lambda::Function"}
    emulated, changes = for_the_emulator(template, values, stack_set)
    return {
        "parameters": values,
        "resources": resources,
        "functions": sorted(functions),
        "template": emulated,
        "changes": changes,
    }


def for_the_emulator(template: dict, values: dict, stack_set: bool = False) -> tuple[dict, list]:
    """The template, changed where moto 5.2's CloudFormation cannot take it,
    and each change with its reason.

    A managed policy's PolicyDocument given as JSON text (Fn::Sub over the
    text, so that a condition key can hold a parameter) is JSON-encoded a
    second time by moto, whose IAM then refuses it ("Syntax errors in
    policy"); CloudFormation takes a document as an object or as text. Here
    it becomes the same document as an object: placeholders in keys filled
    with the stack's parameter values, every other text with a placeholder
    left to Fn::Sub.

    A list item `Fn::If [condition, item, AWS::NoValue]` whose condition is
    false is kept by moto as a null (its IAM then fails on the role's
    `Policies`); CloudFormation drops it. Here such items are dropped for the
    stack's parameter values.

    With `stack_set`: moto creates the stacks of a service-managed StackSet
    as hidden stacks, and a custom resource in one fails the whole operation
    (moto looks its stack up by id, and a hidden stack has none). The custom
    resources are removed (custom-resources is exercised by the one-account
    test), a DependsOn on one dropped, and an attribute of one replaced by
    the property it answers with (EmptyBucket answers BucketName)."""
    template = json.loads(json.dumps(template))
    held = conditions(template, values)
    changes = []
    if stack_set:
        changes += _without_custom_resources(template, held)
    for logical, res in template["Resources"].items():
        pruned = _drop_no_value_items(res, held)
        if pruned != res:
            template["Resources"][logical] = res = pruned
            changes.append(
                f"{logical}: list items Fn::If [false condition, ..., AWS::NoValue] dropped (moto keeps them as nulls)"
            )
        doc = res.get("Properties", {}).get("PolicyDocument")
        if res["Type"] == "AWS::IAM::ManagedPolicy" and isinstance(doc, dict) and "Fn::Sub" in doc:
            text, variables = (doc["Fn::Sub"], {}) if isinstance(doc["Fn::Sub"], str) else doc["Fn::Sub"]
            res["Properties"]["PolicyDocument"] = _as_object(json.loads(text), variables, values)
            changes.append(
                f"{logical}: PolicyDocument given as an object instead of JSON text (moto JSON-encodes a text "
                "document a second time and refuses it); keys filled with this stack's parameter values"
            )
    return template, changes


def _without_custom_resources(template: dict, held: dict) -> list:
    resources = template["Resources"]
    custom = {k: v for k, v in resources.items() if v["Type"].startswith("Custom::")}
    for logical in custom:
        del resources[logical]
    # What the stack would not create goes too (it may name a custom resource).
    for logical in [k for k, v in resources.items() if "Condition" in v and not held[v["Condition"]]]:
        del resources[logical]

    def replace(node):
        if isinstance(node, list):
            return [replace(n) for n in node]
        if not isinstance(node, dict):
            return node
        if node.keys() == {"Fn::GetAtt"} and node["Fn::GetAtt"][0] in custom:
            logical, attribute = node["Fn::GetAtt"]
            properties = custom[logical]["Properties"]
            assert attribute in properties, f"{logical}.{attribute} is not one of its properties"
            return properties[attribute]
        return {k: replace(v) for k, v in node.items()}

    for logical, res in list(resources.items()):
        res = replace(res)
        depends = res.get("DependsOn")
        if depends is not None:
            kept = [d for d in ([depends] if isinstance(depends, str) else depends) if d not in custom]
            if kept:
                res["DependsOn"] = kept
            else:
                del res["DependsOn"]
        resources[logical] = res
    return [
        f"{logical} ({res['Type']}): removed (moto's hidden StackSet stacks cannot hold a custom resource); "
        "its attributes replaced by the properties it answers with"
        for logical, res in custom.items()
        if "Condition" not in res or held[res["Condition"]]
    ] + ["resources the stack does not create (their condition is false) left out"]


def _drop_no_value_items(node, held: dict):
    if isinstance(node, dict):
        return {k: _drop_no_value_items(v, held) for k, v in node.items()}
    if isinstance(node, list):
        out = []
        for item in node:
            branch = item.get("Fn::If") if isinstance(item, dict) and len(item) == 1 else None
            if branch and branch[2] == {"Ref": "AWS::NoValue"} and not held[branch[0]]:
                continue
            out.append(_drop_no_value_items(item, held))
        return out
    return node


def _as_object(node, variables: dict, values: dict):
    def fill_key(key: str) -> str:
        for name, value in values.items():
            key = key.replace("${%s}" % name, value)
        assert "${" not in key, f"a placeholder in {key} is not a parameter"
        return key

    if isinstance(node, dict):
        return {fill_key(k): _as_object(v, variables, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_as_object(v, variables, values) for v in node]
    if isinstance(node, str) and "${" in node:
        return {"Fn::Sub": [node, variables]} if variables else {"Fn::Sub": node}
    return node


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
    elif command in ("plan", "plan-stack-set"):
        given = dict(a.split("=", 1) for a in args[1:])
        out = plan(json.loads(Path(args[0]).read_text()), given, stack_set=command == "plan-stack-set")
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
