"""The release template: template.yaml as plain CloudFormation, with no
Transform, for `aws cloudformation deploy` and StackSets.

StackSets with service-managed permissions refuse templates with transforms
under their default execution role ("You can't provision nested stacks,
transforms, or macros with the default execution role",
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/stacksets-custom-execution-role.html),
so the release carries what the transforms would produce instead:

- AWS::Serverless-2016-10-31 is translated by aws-sam-translator, the library
  the service itself runs for that transform, with no parameter values: the
  result must not depend on them (tests/template/test_release.py renders it
  with two sets of values and compares).
- AWS::LanguageExtensions, while template.yaml still declares it, is expanded
  with SAM CLI's own language-extensions processors, limited to what the
  transform adds to CloudFormation: Fn::ForEach loops, and the Fn::Length,
  Fn::ToJsonString and computed Ref it allows. A loop over a parameter (or a
  language-extension function of one) can only be expanded for one value of
  it, so the release pins each such parameter to its default (AllowedValues)
  and says so in its description; every other parameter stays a parameter.
  (SAM CLI's whole expander is no use here: it resolves every parameter to its
  value or drops it, which suits `sam build` but not a template that is still
  to be deployed with the user's values.)

Each function's code is a parameterised S3 location: the bucket
`<ArtifactBucketPrefix>-<region>` (Lambda reads code only from a bucket in the
function's own region, https://docs.aws.amazon.com/lambda/latest/api/API_FunctionCode.html,
so one template serves every region with one bucket per region) and the key
`<ArtifactKeyPrefix>/<binary>.zip`, the prefix defaulting to `tether/<version>`.
"""

import copy
import json
import os
import re

from samtranslator.translator.arn_generator import ArnGenerator
from samtranslator.translator.transform import transform

SERVERLESS = "AWS::Serverless-2016-10-31"
LANGUAGE_EXTENSIONS = "AWS::LanguageExtensions"
# What only AWS::LanguageExtensions gives a template (besides Fn::ForEach keys).
LANGUAGE_EXTENSION_FUNCTIONS = ("Fn::Length", "Fn::ToJsonString")
# The release's own parameters: where the function code is.
BUCKET_PREFIX = "ArtifactBucketPrefix"
KEY_PREFIX = "ArtifactKeyPrefix"
# A bucket name is at most 63 characters; the longest region names have 14
# (ap-southeast-5) and the suffix adds a hyphen: 48 are left for the prefix.
BUCKET_PREFIX_MAX = 48
# Placeholder code locations for the translator; replaced after translation.
_PLACEHOLDER_BUCKET = "tether-release-placeholder"


class ReleaseError(Exception):
    """The template cannot be rendered as a release; the message says why."""


def transforms(template: dict) -> list:
    declared = template.get("Transform", [])
    return [declared] if isinstance(declared, str) else list(declared)


def artifact_parameters(version: str) -> dict:
    return {
        BUCKET_PREFIX: {
            "Type": "String",
            "AllowedPattern": f"^[a-z0-9][a-z0-9.-]{{0,{BUCKET_PREFIX_MAX - 1}}}$",
            "ConstraintDescription": f"1 to {BUCKET_PREFIX_MAX} lowercase letters, digits, dots and hyphens "
            "(the start of an S3 bucket name).",
            "Description": "The release's code is read from the S3 bucket <ArtifactBucketPrefix>-<region> in each "
            "region the stack is deployed to (Lambda reads code only from a bucket in its own region), e.g. "
            "acme-tether gives acme-tether-us-east-1.",
        },
        KEY_PREFIX: {
            "Type": "String",
            "Default": f"tether/{version}",
            "AllowedPattern": "^[A-Za-z0-9!_.*'()/-]{1,900}[A-Za-z0-9!_.*'()-]$",
            "ConstraintDescription": "an S3 key prefix without a trailing slash.",
            "Description": "The key prefix of the release's zips in that bucket: <ArtifactKeyPrefix>/<function>.zip.",
        },
    }


def code_location(binary: str) -> dict:
    return {
        "S3Bucket": {"Fn::Sub": "${%s}-${AWS::Region}" % BUCKET_PREFIX},
        "S3Key": {"Fn::Sub": "${%s}/%s.zip" % (KEY_PREFIX, binary)},
    }


def functions(template: dict) -> dict:
    """Logical id to binary name of every AWS::Serverless::Function (its
    BuildProperties.Binary, as `sam build` builds it)."""
    out = {}
    for logical, res in template["Resources"].items():
        # (An Fn::ForEach loop is a list, not a resource.)
        if isinstance(res, dict) and res.get("Type") == "AWS::Serverless::Function":
            binary = res.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
            if not binary:
                raise ReleaseError(f"{logical}: no Metadata.BuildProperties.Binary, so no zip to point it at")
            out[logical] = binary
    return out


def render(template: dict, version: str, parameter_values: dict | None = None) -> dict:
    """The release template for `template` (template.yaml, parsed).

    `parameter_values` go to the translator (none for the release); a test
    passes some to show that the result does not depend on them."""
    template = copy.deepcopy(template)
    declared = transforms(template)
    unknown = [t for t in declared if t not in (SERVERLESS, LANGUAGE_EXTENSIONS)]
    if unknown:
        raise ReleaseError(f"transforms the release cannot render: {unknown}")
    pinned = {}
    if LANGUAGE_EXTENSIONS in declared:
        template, pinned = expand_language_extensions(template)
    binaries = functions(template)
    for logical, binary in binaries.items():
        template["Resources"][logical].setdefault("Properties", {})["CodeUri"] = f"s3://{_PLACEHOLDER_BUCKET}/{binary}.zip"
    template.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
    template["Transform"] = SERVERLESS
    rendered = _any_partition(_translate(template, parameter_values or {}))
    for logical, binary in binaries.items():
        props = rendered["Resources"][logical]["Properties"]
        if props.get("Code") != {"S3Bucket": _PLACEHOLDER_BUCKET, "S3Key": f"{binary}.zip"}:
            raise ReleaseError(f"{logical}: the translator wrote Code {props.get('Code')!r}, not the placeholder")
        props["Code"] = code_location(binary)
    rendered["Parameters"] = {**rendered["Parameters"], **artifact_parameters(version)}
    for name, value in pinned.items():
        pin(rendered["Parameters"][name], name, value)
    if pinned:
        _drop_unused_parameters(rendered)
    _group_artifact_parameters(rendered)
    leftovers = language_extension_leftovers(rendered)
    if leftovers:
        raise ReleaseError(f"the release still uses language extensions at {leftovers}")
    return rendered


def _translate(template: dict, parameter_values: dict) -> dict:
    """aws-sam-translator with no parameter values. It needs a region only
    for the partition of AWS managed policy ARNs, which _any_partition then
    generalises; the result is the same whichever region is named here
    (AWS_REGION, else us-east-1; the translator would otherwise take the
    region of the first boto3 session of the process, and keep it)."""
    region = os.environ.get("AWS_REGION", "us-east-1")
    previous = ArnGenerator.BOTO_SESSION_REGION_NAME, os.environ.get("AWS_DEFAULT_REGION")
    ArnGenerator.BOTO_SESSION_REGION_NAME = region
    os.environ["AWS_DEFAULT_REGION"] = region
    try:
        return transform(template, dict(parameter_values), _NoManagedPolicies())
    finally:
        ArnGenerator.BOTO_SESSION_REGION_NAME = previous[0]
        if previous[1] is None:
            os.environ.pop("AWS_DEFAULT_REGION")
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous[1]


_MANAGED_POLICY_ARN = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/(.+)$")


def _any_partition(node):
    """AWS managed policy ARNs in the partition the stack is deployed to."""
    if isinstance(node, list):
        return [_any_partition(n) for n in node]
    if isinstance(node, dict):
        return {k: _any_partition(v) for k, v in node.items()}
    if isinstance(node, str) and (m := _MANAGED_POLICY_ARN.match(node)):
        return {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/" + m.group(1)}
    return node


def pin(parameter: dict, name: str, value: list) -> None:
    """Allows only `value`, the one the release was expanded for."""
    parameter["AllowedValues"] = value
    parameter.pop("AllowedPattern", None)
    parameter["ConstraintDescription"] = (
        f"this release was rendered from a template with Fn::ForEach over {name}, which can only be expanded "
        f"for one value: {','.join(value)!r}. Deploy from source (sam deploy) for other values."
    )
    parameter["Description"] = f"Fixed in this release to its default. {parameter.get('Description', '')}".strip()


def _drop_unused_parameters(rendered: dict) -> None:
    """Parameters only the pruned parts used: a value given for one would do
    nothing, so CloudFormation should refuse it rather than accept it."""
    used = _parameter_names([rendered.get(s, {}) for s in ("Resources", "Outputs", "Conditions", "Rules")])
    unused = [name for name in rendered["Parameters"] if name not in used]
    for name in unused:
        del rendered["Parameters"][name]
    for group in rendered.get("Metadata", {}).get("AWS::CloudFormation::Interface", {}).get("ParameterGroups", []):
        group["Parameters"] = [p for p in group["Parameters"] if p not in unused]


_SUB_NAME = re.compile(r"\$\{([A-Za-z0-9:]+)(?:\.[A-Za-z0-9.]+)?\}")


def _parameter_names(node) -> set:
    """Names referred to by Ref or ${...} in Fn::Sub."""
    found = set()
    if isinstance(node, list):
        for n in node:
            found |= _parameter_names(n)
    elif isinstance(node, dict):
        for k, v in node.items():
            if k == "Ref" and isinstance(v, str):
                found.add(v)
            elif k == "Fn::Sub":
                text = v if isinstance(v, str) else v[0]
                found |= set(_SUB_NAME.findall(text))
            found |= _parameter_names(v)
    return found


def _group_artifact_parameters(rendered: dict) -> None:
    groups = rendered.get("Metadata", {}).get("AWS::CloudFormation::Interface", {}).get("ParameterGroups")
    if groups is not None:
        groups.insert(0, {"Label": {"default": "Release: where the function code is"}, "Parameters": [BUCKET_PREFIX, KEY_PREFIX]})


# ---------------------------------------------------------------- AWS::LanguageExtensions


def expand_language_extensions(template: dict) -> tuple[dict, dict]:
    """Fn::ForEach expanded and the language-extension functions resolved,
    with SAM CLI's processors; returns the template without
    AWS::LanguageExtensions and the parameters pinned (name to value list)."""
    from samcli.lib.cfn_language_extensions.api import create_default_intrinsic_resolver
    from samcli.lib.cfn_language_extensions.models import ResolutionMode, TemplateProcessingContext
    from samcli.lib.cfn_language_extensions.processors import ForEachProcessor, TemplateParsingProcessor

    declared = template.get("Parameters", {})
    pinned_names = sorted(_parameters_needing_a_value(template, declared))
    pinned = {name: _default_list(declared[name]) for name in pinned_names}
    values = {name: (v if declared[name]["Type"] == "CommaDelimitedList" else ",".join(v)) for name, v in pinned.items()}

    context = TemplateProcessingContext(
        fragment=copy.deepcopy(template),
        parameter_values=values,
        pseudo_parameters=None,
        resolution_mode=ResolutionMode.PARTIAL,
    )
    TemplateParsingProcessor().process_template(context)
    resolver = create_default_intrinsic_resolver(context)
    ForEachProcessor(resolver).process_template(context)
    expanded = context.fragment
    for section in ("Conditions", "Resources", "Outputs"):
        if section in expanded:
            expanded[section] = _collapse_plain_subs(_resolve_extensions(expanded[section], resolver, section))
    expanded["Transform"] = [t for t in transforms(template) if t != LANGUAGE_EXTENSIONS]
    _prune(expanded, {name: values[name] for name in pinned})
    return expanded, pinned


def _collapse_plain_subs(node):
    """Fn::Sub of a text with no ${...} left (a loop variable substituted) is that text."""
    if isinstance(node, list):
        return [_collapse_plain_subs(n) for n in node]
    if not isinstance(node, dict):
        return node
    if node.keys() == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str) and "${" not in node["Fn::Sub"]:
        return node["Fn::Sub"]
    return {k: _collapse_plain_subs(v) for k, v in node.items()}


# ------------------------------------------------- what the pinned values decide

UNKNOWN = None


def _prune(template: dict, pinned: dict) -> None:
    """Removes what the pinned parameters make dead, as CloudFormation would
    for every stack of this release: resources and outputs whose condition
    can never hold, the Fn::If branches never taken, and the conditions
    nothing uses any more. A condition that depends on any other parameter
    stays, for CloudFormation to evaluate."""
    conditions = template.get("Conditions", {})
    memo: dict = {}

    def value(node):
        """The value of `node` if the pinned parameters decide it, else UNKNOWN."""
        if isinstance(node, str):
            return node
        if isinstance(node, list):
            items = [value(n) for n in node]
            return UNKNOWN if any(i is UNKNOWN for i in items) else items
        if not isinstance(node, dict) or len(node) != 1:
            return UNKNOWN
        (fn, args), = node.items()
        if fn == "Ref":
            return pinned.get(args, UNKNOWN) if isinstance(args, str) else UNKNOWN
        if fn == "Fn::Join":
            items = value(args[1])
            return UNKNOWN if items is UNKNOWN else args[0].join(items)
        if fn == "Fn::Split":
            text = value(args[1])
            return UNKNOWN if text is UNKNOWN else text.split(args[0])
        if fn == "Fn::Select":
            items, index = value(args[1]), value(args[0])
            if items is UNKNOWN or index is UNKNOWN or not 0 <= int(index) < len(items):
                return UNKNOWN
            return items[int(index)]
        return UNKNOWN

    def truth(node):
        (fn, args), = node.items()
        if fn == "Condition":
            return condition(args)
        if fn == "Fn::Equals":
            a, b = value(args[0]), value(args[1])
            return UNKNOWN if a is UNKNOWN or b is UNKNOWN else a == b
        if fn == "Fn::Not":
            t = truth(args[0])
            return UNKNOWN if t is UNKNOWN else not t
        if fn in ("Fn::And", "Fn::Or"):
            ts = [truth(a) for a in args]
            decisive = fn == "Fn::Or"
            if decisive in ts:
                return decisive
            return UNKNOWN if UNKNOWN in ts else not decisive
        return UNKNOWN

    def condition(name):
        if name not in memo:
            memo[name] = truth(conditions[name])
        return memo[name]

    for section in ("Resources", "Outputs"):
        entries = template.get(section, {})
        for key, entry in list(entries.items()):
            held = condition(entry["Condition"]) if "Condition" in entry else UNKNOWN
            if held is False:
                del entries[key]
            elif held is True:
                del entry["Condition"]

    def simplify(node):
        if isinstance(node, list):
            return [simplify(n) for n in node]
        if not isinstance(node, dict):
            return node
        if node.keys() == {"Fn::If"} and isinstance(node["Fn::If"][0], str):
            known = condition(node["Fn::If"][0])
            if known is not UNKNOWN:
                return simplify(node["Fn::If"][1 if known else 2])
        return {k: simplify(v) for k, v in node.items()}

    for section in ("Resources", "Outputs", "Globals"):
        if section in template:
            template[section] = simplify(template[section])

    # Conditions nothing refers to any more (CloudFormation accepts them;
    # cfn-lint warns): keep those the resources and outputs need, directly or
    # through other conditions.
    needed = set()
    todo = _condition_names([template.get(s, {}) for s in ("Resources", "Outputs", "Globals")])
    while todo:
        name = todo.pop()
        if name not in needed and name in conditions:
            needed.add(name)
            todo |= _condition_names(conditions[name])
    for name in [k for k in conditions if k not in needed]:
        del conditions[name]


def _condition_names(node) -> set:
    """Conditions `node` names: Condition keys, Fn::If and {"Condition": ...}."""
    found = set()
    if isinstance(node, list):
        for n in node:
            found |= _condition_names(n)
    elif isinstance(node, dict):
        for k, v in node.items():
            if k == "Condition" and isinstance(v, str):
                found.add(v)
            elif k == "Fn::If" and isinstance(v, list) and v and isinstance(v[0], str):
                found.add(v[0])
            found |= _condition_names(v)
    return found


def _default_list(parameter: dict) -> list:
    """A parameter's default as CloudFormation lists it: "" is one empty item."""
    return str(parameter.get("Default", "")).split(",")


def _parameters_needing_a_value(template: dict, declared: dict) -> set:
    """Parameters that a Fn::ForEach collection, a language-extension function
    or a computed Ref reads: those cannot stay parameters."""
    found = set()

    def refs(node):
        if isinstance(node, list):
            for n in node:
                refs(n)
        elif isinstance(node, dict):
            if node.keys() == {"Ref"} and isinstance(node["Ref"], str) and node["Ref"] in declared:
                found.add(node["Ref"])
            for v in node.values():
                refs(v)

    def walk(node):
        if isinstance(node, list):
            for n in node:
                walk(n)
        elif isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and key.startswith("Fn::ForEach::") and isinstance(value, list) and len(value) == 3:
                    refs(value[1])
                    walk(value[2])
                elif key in LANGUAGE_EXTENSION_FUNCTIONS or (key == "Ref" and not isinstance(value, str)):
                    refs(value)
                else:
                    walk(value)

    for section in ("Conditions", "Resources", "Outputs"):
        walk(template.get(section, {}))
    return found


def _resolve_extensions(node, resolver, path: str):
    """Each language-extension function (and computed Ref) replaced by its
    value; everything else left for CloudFormation."""
    if isinstance(node, list):
        return [_resolve_extensions(n, resolver, f"{path}[{i}]") for i, n in enumerate(node)]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (key, value), = node.items()
        if key in LANGUAGE_EXTENSION_FUNCTIONS or (key == "Ref" and not isinstance(value, str)):
            resolved = resolver.resolve_value(node)
            if key == "Ref" and isinstance(resolved, dict) and isinstance(resolved.get("Ref"), str):
                return resolved
            if _has_intrinsic(resolved):
                raise ReleaseError(f"{path}: {key} does not resolve to a value ({json.dumps(resolved)[:200]})")
            return {"Ref": resolved} if key == "Ref" else resolved
    return {k: _resolve_extensions(v, resolver, f"{path}.{k}") for k, v in node.items()}


def _has_intrinsic(node) -> bool:
    if isinstance(node, list):
        return any(_has_intrinsic(n) for n in node)
    if isinstance(node, dict):
        return any(k == "Ref" or k.startswith("Fn::") or _has_intrinsic(v) for k, v in node.items())
    return False


def language_extension_leftovers(node, path: str = "") -> list:
    """Where `node` still holds Fn::ForEach, a language-extension function, a
    computed Ref, a Transform or a macro (Fn::Transform, AWS::Include)."""
    out = []
    if isinstance(node, list):
        for i, n in enumerate(node):
            out += language_extension_leftovers(n, f"{path}[{i}]")
    elif isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else key
            if (
                key.startswith("Fn::ForEach")
                or key in LANGUAGE_EXTENSION_FUNCTIONS
                or key in ("Transform", "Fn::Transform")
                or (key == "Ref" and not isinstance(value, str))
                or (key == "Name" and value == "AWS::Include")
            ):
                out.append(here)
            out += language_extension_leftovers(value, here)
    return out


class _NoManagedPolicies:
    """The template names no managed policy by name; SAM's own defaults need no lookup."""

    def load(self):
        return {}
