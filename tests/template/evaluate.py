"""Evaluates the rendered template the way CloudFormation would for given
parameter values, where the tests need a value rather than a shape: which
conditions hold, and the worst-case text of an environment variable."""

import re

# The longest values a pseudo parameter or an attribute can take here, so
# that a size computed with them bounds the real one.
PSEUDO = {
    "AWS::Region": "ap-southeast-2",
    "AWS::Partition": "aws-iso-b",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "s" * 128,
    "AWS::URLSuffix": "amazonaws.com",
}
ATTRIBUTE = "a" * 63  # a bucket name, the longest attribute a variable takes


def parameter(params: dict, declared: dict, name: str):
    value = params.get(name, declared[name].get("Default", ""))
    if declared[name]["Type"] == "CommaDelimitedList":
        return str(value).split(",")
    return str(value)


def conditions(template: dict, params: dict) -> dict:
    declared = template["Parameters"]
    memo: dict = {}

    def value(node):
        if isinstance(node, str):
            return node
        (fn, args), = node.items()
        if fn == "Ref":
            return parameter(params, declared, args) if args in declared else PSEUDO[args]
        if fn == "Fn::Join":
            return args[0].join(value(args[1]) if isinstance(args[1], dict) else [value(a) for a in args[1]])
        if fn == "Fn::Split":
            return value(args[1]).split(args[0])
        if fn == "Fn::Select":
            return value(args[1])[int(args[0])]
        if fn == "Fn::Sub":
            text, variables = (args, {}) if isinstance(args, str) else args
            values = {k: value(v) for k, v in variables.items()}
            return re.sub(r"\$\{([^}!]+)\}", lambda m: values[m.group(1)] if m.group(1) in values else value({"Ref": m.group(1)}), text)
        raise AssertionError(f"unexpected {fn} in a condition")

    def holds(node) -> bool:
        (fn, args), = node.items()
        if fn == "Condition":
            return condition(args)
        if fn == "Fn::Equals":
            return value(args[0]) == value(args[1])
        if fn == "Fn::Not":
            return not holds(args[0])
        if fn == "Fn::And":
            return all(holds(a) for a in args)
        if fn == "Fn::Or":
            return any(holds(a) for a in args)
        raise AssertionError(f"unexpected {fn} in a condition")

    def condition(name: str) -> bool:
        if name not in memo:
            memo[name] = holds(template["Conditions"][name])
        return memo[name]

    return {name: condition(name) for name in template["Conditions"]}


def created(template: dict, params: dict) -> set:
    """Logical ids of the resources a stack with these parameters creates."""
    held = conditions(template, params)
    return {k for k, v in template["Resources"].items() if "Condition" not in v or held[v["Condition"]]}


def worst_case_text(node, params: dict, declared: dict):
    """The longest text `node` can evaluate to (None for AWS::NoValue): both
    branches of an Fn::If are tried, attributes take their longest value."""
    if isinstance(node, (str, int, float)):
        return str(node)
    (fn, args), = node.items()
    if fn == "Ref":
        if args == "AWS::NoValue":
            return None
        if args in declared:
            v = parameter(params, declared, args)
            return ",".join(v) if isinstance(v, list) else v
        return PSEUDO.get(args, ATTRIBUTE)
    if fn == "Fn::GetAtt":
        return ATTRIBUTE
    if fn == "Fn::If":
        options = [worst_case_text(a, params, declared) for a in args[1:]]
        texts = [o for o in options if o is not None]
        return max(texts, key=len) if texts else None
    if fn == "Fn::Join":
        items = args[1]
        if isinstance(items, dict):
            return worst_case_text(items, params, declared)
        return args[0].join(worst_case_text(i, params, declared) or "" for i in items)
    if fn == "Fn::Sub":
        text, variables = (args, {}) if isinstance(args, str) else args
        def fill(m):
            name = m.group(1)
            if name in variables:
                return worst_case_text(variables[name], params, declared) or ""
            return worst_case_text({"Ref": name}, params, declared) or ""
        return re.sub(r"\$\{([^}!]+)\}", fill, text)
    if fn == "Fn::Split":
        return (worst_case_text(args[1], params, declared) or "").split(args[0])
    if fn == "Fn::Select":
        items = args[1]
        items = worst_case_text(items, params, declared) if isinstance(items, dict) else items
        if isinstance(items, str):  # a CommaDelimitedList parameter, as text
            items = items.split(",")
        return items[int(args[0])]
    raise AssertionError(f"cannot evaluate {fn}")


def value_of(node, params: dict, template: dict, held: dict, attributes: dict):
    """The value `node` takes for these parameters (None for AWS::NoValue):
    Fn::If follows its condition; Fn::GetAtt takes attributes[(id, name)]."""
    declared = template["Parameters"]
    if isinstance(node, (str, int, float)):
        return str(node)
    (fn, args), = node.items()
    if fn == "Fn::If":
        return value_of(args[1] if held[args[0]] else args[2], params, template, held, attributes)
    if fn == "Fn::GetAtt":
        return attributes[tuple(args)]
    if fn == "Ref" and args in template["Resources"]:
        return attributes[(args, "Ref")]
    if fn in ("Fn::Join", "Fn::Sub", "Fn::Select", "Fn::Split"):
        resolved = _resolve_ifs(node, held)
        return worst_case_text(resolved, params, declared)
    return worst_case_text(node, params, declared)


def variable_maps(variables) -> list:
    """Every map an Environment's Variables can be: one, or each branch of
    an Fn::If that chooses the whole map."""
    if set(variables) == {"Fn::If"}:
        return [m for branch in variables["Fn::If"][1:] for m in variable_maps(branch)]
    return [variables]


def _resolve_ifs(node, held):
    if isinstance(node, list):
        return [_resolve_ifs(n, held) for n in node]
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            c, a, b = node["Fn::If"]
            return _resolve_ifs(a if held[c] else b, held)
        return {k: _resolve_ifs(v, held) for k, v in node.items()}
    return node


def environments(rendered: dict, params: dict, attributes: dict) -> dict:
    """Each created function's environment, as Lambda would start it."""
    held = conditions(rendered, params)
    out = {}
    for name, res in rendered["Resources"].items():
        if res["Type"] != "AWS::Lambda::Function" or ("Condition" in res and not held[res["Condition"]]):
            continue
        variables = res["Properties"].get("Environment", {}).get("Variables", {})
        if set(variables) == {"Fn::If"}:  # the whole map chosen by a condition
            variables = _resolve_ifs(variables, held)
        env = {}
        for key, node in variables.items():
            v = value_of(node, params, rendered, held, attributes)
            if v is not None:
                env[key] = v
        out[name] = env
    return out
