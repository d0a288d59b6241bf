"""docs/configuration.md stays equal to the code and to template.yaml.

Each set below is taken from its source of truth and compared with the
page's tables, both ways:

- the template's parameters (names, order, defaults, types, allowed values,
  patterns, ranges, rules) from template.yaml;
- the environment variables the Rust code reads (string literals, or `&str`
  constants, passed to `vars.get/number/boolean/required` or to
  `std::env::var`/`var_os`, outside test code), per function;
- the variables each function's `Environment: Variables:` block sets, and
  the parameters their values reference;
- the tag suffixes target-sync reads (`sync/tags.rs`) and the fields of a
  `TARGETS` mapping and of a `CANARY_TARGETS` endpoint (`Fields` calls),
  with their numeric ranges.

Every extraction is checked to be non-empty and to hold names known to be
there, so that a regex that stops matching fails instead of passing.
"""

import re
from functools import cache
from pathlib import Path

import pytest

from render import load

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"

# Variables the code reads that Lambda itself sets (reserved: a function's
# configuration cannot set them). The page lists them, saying "set by Lambda".
RESERVED = {
    "AWS_LAMBDA_FUNCTION_NAME": "set by Lambda; the code reads it as the FunctionName metric dimension",
}

# Which source files hold each function's configuration reads. The shared
# helpers of shared/src/config.rs (dns_settings, namespace) are added where
# these files call them. custom-resources reads target-sync's variables
# through SyncConfig::from_vars (checked below).
FUNCTION_SOURCES = {
    "target-sync": ["shared/src/sync/config.rs", "shared/src/aws.rs"],
    "health-canary": ["shared/src/canary/config/*.rs", "shared/src/canary/settings.rs", "shared/src/aws.rs"],
    "custom-resources": ["shared/src/cfn/*.rs", "shared/src/sync/config.rs", "shared/src/aws.rs"],
}
SHARED_HELPERS = "shared/src/config.rs"


# ---------------------------------------------------------------- the page


@cache
def doc_text() -> str:
    return DOC.read_text()


def section(title: str, text: str | None = None) -> str:
    """The text under the heading `title`, up to the next heading of the same
    or a higher level."""
    text = doc_text() if text is None else text
    m = re.search(rf"^(#+) {re.escape(title)}\s*$", text, re.M)
    assert m, f"docs/configuration.md has no heading {title!r}"
    level = len(m.group(1))
    rest = text[m.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


def split_row(line: str) -> list[str]:
    # A row starts and ends with a pipe: drop the empty ends. `\|` is a
    # pipe inside a cell.
    cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [c.strip().replace("\\|", "|") for c in cells]


def first_table(text: str) -> tuple[list[str], list[list[str]]]:
    """The first Markdown table in `text`: its header and its rows."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|(\s*-+\s*\|)+\s*$", lines[i + 1]):
            header = split_row(line)
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                cells = split_row(row)
                assert len(cells) == len(header), f"row has {len(cells)} cells, header {len(header)}: {row}"
                rows.append(cells)
            return header, rows
    raise AssertionError("no table found")


def table(title: str) -> list[dict]:
    header, rows = first_table(section(title))
    return [dict(zip(header, row)) for row in rows]


def code_names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def env_names(cell: str) -> list[str]:
    return [n for n in code_names(cell) if re.fullmatch(r"[A-Z][A-Z0-9_]+", n)]


def doc_variables(function: str) -> dict[str, dict]:
    """The rows of a function's variable table, by variable name."""
    out = {}
    for row in table(function):
        names = env_names(row["Variable"])
        assert names, f"{function}: a row names no variable: {row}"
        for name in names:
            assert name not in out, f"{function}: {name} is listed twice"
            out[name] = row
    return out


def normalise(value) -> str:
    text = str(value).strip()
    if text.startswith("`") and text.endswith("`"):
        text = text[1:-1]
    return "" if text == '""' else text


# ---------------------------------------------------------------- the code


RAW_STRING = re.compile(r'r(#*)"')
CHAR = re.compile(r"'(\\.|\\u\{[0-9a-fA-F]+\}|[^\\'])'")


def scan(code: str) -> tuple[str, str]:
    """Two copies of `code`, of its length and with its newlines: comments
    blanked (string literals kept), and comments and the contents of string
    and char literals blanked (so that braces inside them do not count)."""
    keep, mask = list(code), list(code)
    i, n = 0, len(code)

    def blank(copy, start, end):
        for k in range(start, end):
            if copy[k] != "\n":
                copy[k] = " "

    while i < n:
        c = code[i]
        if code.startswith("//", i):
            end = code.find("\n", i)
            end = n if end < 0 else end
            blank(keep, i, end)
            blank(mask, i, end)
            i = end
        elif code.startswith("/*", i):
            end = code.find("*/", i + 2)
            end = n if end < 0 else end + 2
            blank(keep, i, end)
            blank(mask, i, end)
            i = end
        elif (m := RAW_STRING.match(code, i)) and not (i and (code[i - 1].isalnum() or code[i - 1] == "_")):
            close = code.find('"' + m.group(1), m.end())
            end = n if close < 0 else close + 1 + len(m.group(1))
            blank(mask, m.end(), end - 1 - len(m.group(1)))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and code[j] != '"':
                j += 2 if code[j] == "\\" else 1
            blank(mask, i + 1, j)
            i = j + 1
        elif c == "'" and (m := CHAR.match(code, i)):
            blank(mask, i + 1, m.end() - 1)
            i = m.end()
        else:
            i += 1
    return "".join(keep), "".join(mask)


@cache
def non_test_text(path: Path) -> str:
    """`path` without comments and without its `#[cfg(test)] mod x { ... }`
    blocks; string literals kept."""
    keep, mask = scan(path.read_text())
    spans = []
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub\s+)?mod \w+\s*\{", mask):
        depth, j = 1, m.end()
        while depth and j < len(mask):
            depth += {"{": 1, "}": -1}.get(mask[j], 0)
            j += 1
        assert depth == 0, f"{path}: unbalanced braces after #[cfg(test)]"
        spans.append((m.start(), j))
    kept, last = [], 0
    for start, end in spans:
        kept.append(keep[last:start])
        last = end
    kept.append(keep[last:])
    return "".join(kept)


@cache
def modules_only_for_tests() -> set[Path]:
    """Files that are test-only modules (`#[cfg(test)] mod x;`, or the
    `fakes` feature module of in-memory fakes)."""
    out = set()
    for path in rust_files(include_tests=True):
        text = path.read_text()
        for m in re.finditer(
            r'#\[cfg\((?:test|any\(test[^\]]*\))\)\]\s*(?:#\[path = "([^"]+)"\]\s*)?(?:pub\s+)?mod (\w+);', text
        ):
            base = path.parent if path.name in ("mod.rs", "lib.rs", "main.rs") else path.parent / path.stem
            if m.group(1):
                out.add((path.parent / m.group(1)).resolve())
            else:
                out.add((base / f"{m.group(2)}.rs").resolve())
                out.add((base / m.group(2) / "mod.rs").resolve())
    return out


@cache
def rust_files(include_tests: bool = False) -> list[Path]:
    files = sorted((ROOT / "shared" / "src").rglob("*.rs")) + sorted(ROOT.glob("functions/*/src/**/*.rs"))
    if include_tests:
        return files
    skip = modules_only_for_tests()
    return [f for f in files if f.resolve() not in skip]


@cache
def str_constants() -> dict[str, str]:
    """`const NAME: &str = "VALUE";` across the code."""
    out = {}
    for path in rust_files():
        for name, value in re.findall(r'\bconst ([A-Z][A-Z0-9_]*): &str = "([^"]*)";', path.read_text()):
            out[name] = value
    return out


@cache
def num_constants() -> dict[str, int]:
    out = {}
    for path in rust_files():
        for name, value in re.findall(r"\bconst ([A-Z][A-Z0-9_]*): u\d+ = ([0-9_]+);", path.read_text()):
            out[name] = int(value.replace("_", ""))
    return out


@cache
def range_constants() -> dict[str, tuple[int, int]]:
    out = {}
    for path in rust_files():
        for name, lo, hi in re.findall(
            r"\bconst ([A-Z][A-Z0-9_]*): (?:std::ops::)?RangeInclusive<u64> = ([0-9_]+)\.\.=([0-9_]+);", path.read_text()
        ):
            out[name] = (int(lo.replace("_", "")), int(hi.replace("_", "")))
    return out


# `vars.get("X")`, `vars.number("X", 1..=9)`, `env.get(CONST)`,
# `std::env::var("X")`: the argument is a string literal or a constant.
READ = re.compile(
    r"\b(?:vars|env)\s*\.(?:get|number|boolean|required)\(\s*(?:\"([A-Za-z0-9_]+)\"|([A-Z][A-Z0-9_]*)\b)"
    r"|\benv::var(?:_os)?\(\s*(?:\"([A-Za-z0-9_]+)\"|([A-Z][A-Z0-9_]*)\b)"
)
# A call whose argument is anything else: a wrapper (`|name| std::env::var(name)`)
# or a loop over names; each must be known, or a read could be missed.
OTHER_READ = re.compile(r"\b(?:(?:vars|env)\s*\.(?:get|number|boolean|required)|env::var(?:_os)?)\(\s*([a-z_][a-z0-9_]*)\b")
KNOWN_INDIRECT = {
    # Vars(|name: &str| std::env::var(name).ok()), and the canary's overlay of
    # the S3 object: `other => std::env::var(other).ok()`.
    "name",
    "other",
    # sync/config.rs: `sample_vars.iter().any(|v| vars.get(v)...)`, over
    # ALB_DNS_NAME, ALB_LISTENER and NLB_TG_ARN, each also read by name.
    "v",
}


def reads_in(text: str) -> set[str]:
    consts = str_constants()
    names = set()
    for m in READ.finditer(text):
        literal = m.group(1) or m.group(3)
        const = m.group(2) or m.group(4)
        if literal:
            names.add(literal)
        else:
            assert const in consts, f"{const} is not a &str constant of the code"
            names.add(consts[const])
    for m in OTHER_READ.finditer(text):
        assert m.group(1) in KNOWN_INDIRECT, (
            f"an environment read through `{m.group(1)}`: teach test_configuration_doc.py where its names come from"
        )
    return names


@cache
def code_reads() -> dict[Path, set[str]]:
    out = {}
    for path in rust_files():
        names = reads_in(non_test_text(path))
        if names:
            out[path.relative_to(ROOT)] = names
    return out


@cache
def helper_reads() -> dict[str, set[str]]:
    """The variables each `pub fn` of shared/src/config.rs reads."""
    text = non_test_text(ROOT / SHARED_HELPERS)
    out = {}
    chunks = re.split(r"\n(?=pub fn |impl )", text)
    for chunk in chunks:
        m = re.match(r"pub fn (\w+)", chunk)
        if m:
            out[m.group(1)] = reads_in(chunk)
    return out


@cache
def function_reads() -> dict[str, set[str]]:
    reads = code_reads()
    helpers = helper_reads()
    out = {}
    for function, patterns in FUNCTION_SOURCES.items():
        names = set()
        for pattern in patterns:
            files = sorted(ROOT.glob(pattern))
            assert files, f"{pattern} matches no file"
            for path in files:
                if path.resolve() in modules_only_for_tests():
                    continue
                text = non_test_text(path)
                names |= reads_in(text)
                for helper, helper_names in helpers.items():
                    if re.search(rf"\b{helper}\(vars\)", text):
                        names |= helper_names
        out[function] = names
    return out


def all_code_reads() -> set[str]:
    return set().union(*code_reads().values())


# ---------------------------------------------------------------- the template


@cache
def template() -> dict:
    return load()


def functions_of(tpl: dict) -> dict[str, list[dict]]:
    """The template's functions by binary (Metadata.BuildProperties.Binary)."""
    out: dict[str, list[dict]] = {}
    for res in tpl["Resources"].values():
        if res["Type"] in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            binary = res.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
            assert binary, "a function without Metadata.BuildProperties.Binary"
            out.setdefault(binary, []).append(res)
    return out


def variable_maps(node) -> list[dict]:
    """The maps an `Environment.Variables` value can be: both branches of
    an `Fn::If`."""
    if isinstance(node, dict) and list(node) == ["Fn::If"]:
        return [m for branch in node["Fn::If"][1:] for m in variable_maps(branch)]
    if isinstance(node, dict) and list(node) == ["Ref"] and node["Ref"] == "AWS::NoValue":
        return []
    assert isinstance(node, dict), f"unexpected Variables: {node!r}"
    return [node]


def refs(node) -> set[str]:
    """Every Ref (and ${Name} of Fn::Sub) in a value: parameters, pseudo
    parameters and resources."""
    out = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                out.add(value)
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                out |= set(re.findall(r"\$\{([A-Za-z0-9:]+)\}", text))
                if not isinstance(value, str):
                    out |= refs(value[1])
            elif key == "Fn::If":
                out |= refs(value[1:])
            else:
                out |= refs(value)
    elif isinstance(node, list):
        for item in node:
            out |= refs(item)
    return out - {"AWS::NoValue"}


def condition_params(tpl: dict, node) -> set[str]:
    """The parameters that the conditions of the `Fn::If`s in a value
    depend on (a variable set "when HostedZoneId is set")."""
    out = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Fn::If":
                out |= refs_of_condition(tpl, value[0])
            elif key == "Condition" and isinstance(value, str):
                out |= refs_of_condition(tpl, value)
            out |= condition_params(tpl, value)
    elif isinstance(node, list):
        for item in node:
            out |= condition_params(tpl, item)
    return out


def refs_of_condition(tpl: dict, name: str) -> set[str]:
    body = tpl["Conditions"][name]
    return (refs(body) & set(tpl["Parameters"])) | condition_params(tpl, body)


def template_variables(tpl: dict) -> dict[str, dict[str, list]]:
    """function binary -> variable -> the values the template may give it."""
    out: dict[str, dict[str, list]] = {}
    globals_env = tpl.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables")
    for binary, resources in functions_of(tpl).items():
        for res in resources:
            for source in (globals_env, res["Properties"].get("Environment", {}).get("Variables")):
                if source is None:
                    continue
                for variables in variable_maps(source):
                    for name, value in variables.items():
                        out.setdefault(binary, {}).setdefault(name, []).append(value)
    return out


# ---------------------------------------------------------------- the tests


def test_the_extractions_find_what_is_known_to_be_there():
    reads = all_code_reads()
    for name in ["TARGETS", "STATE_BUCKET", "SCHEDULE", "NLB_TG_ARN", "CANARY_TARGETS", "CANARY_TARGETS_S3_URI",
                 "FAILOVER_RECORD_NAME", "SECRETS_TTL_SECONDS", "DNS_SERVERS", "ALLOW_INSECURE_RESPONSE_URL"]:
        assert name in reads, f"the code's reads miss {name}: {sorted(reads)}"
    assert len(reads) >= 35, sorted(reads)
    per_function = function_reads()
    assert "DNS_TIMEOUT_MS" in per_function["health-canary"], "the helpers of config.rs are not followed"
    assert "METRICS_NAMESPACE" in per_function["target-sync"]
    assert "SUCCESS_THRESHOLD" in per_function["health-canary"]
    assert "STATE_BUCKET" in per_function["custom-resources"]
    assert "SyncConfig::from_vars" in (ROOT / "shared/src/cfn/resources.rs").read_text()

    tpl = template()
    assert {"EnableTargetSync", "TagPrefix", "CanaryTargets", "PermissionsBoundaryArn"} <= set(tpl["Parameters"])
    set_vars = template_variables(tpl)
    assert set(set_vars) == {"target-sync", "health-canary", "custom-resources"}, set(set_vars)
    assert {"STATE_BUCKET", "SCHEDULE", "TAG_PREFIX"} <= set(set_vars["target-sync"])
    assert {"CANARY_TARGETS", "STACK_NAME"} <= set(set_vars["health-canary"])
    assert {"DNS_SERVERS", "STATE_BUCKET"} <= set(set_vars["custom-resources"])

    rows = table("Template parameters")
    assert len(rows) >= 30


def test_every_file_that_reads_a_variable_belongs_to_a_function():
    mapped = set()
    for patterns in FUNCTION_SOURCES.values():
        for pattern in patterns:
            mapped |= {p.relative_to(ROOT) for p in ROOT.glob(pattern)}
    mapped.add(Path(SHARED_HELPERS))
    unmapped = set(code_reads()) - mapped
    assert not unmapped, f"files that read variables but are in no FUNCTION_SOURCES entry: {sorted(map(str, unmapped))}"


def test_template_parameters_are_the_templates_in_order_with_their_defaults():
    params = template()["Parameters"]
    rows = table("Template parameters")
    names = [code_names(r["Parameter"])[0] for r in rows]
    assert len(names) == len(set(names)), "a parameter is listed twice"
    assert set(names) == set(params), (
        f"missing from the page: {sorted(set(params) - set(names))}; not in the template: {sorted(set(names) - set(params))}"
    )
    assert names == list(params), "the rows are not in template.yaml's order"
    for row, name in zip(rows, names):
        p = params[name]
        if "Default" in p:
            assert normalise(row["Default"]) == normalise(p["Default"]), (
                f"{name}: the page says {row['Default']}, the template {p['Default']!r}"
            )
        else:
            assert row["Default"].lower() in ("required", "no default"), f"{name} has no default in the template"


def test_template_parameter_checks_are_the_templates():
    params = template()["Parameters"]
    for row in table("Template parameters"):
        name = code_names(row["Parameter"])[0]
        p, check = params[name], row["Allowed values / check"]
        assert check.startswith(p["Type"]), f"{name}: the check should start with its type {p['Type']}: {check}"
        for value in p.get("AllowedValues", []):
            assert f"`{value}`" in check, f"{name}: allowed value {value} missing: {check}"
        if "AllowedPattern" in p:
            assert f"`{p['AllowedPattern']}`" in check, f"{name}: the pattern is not {p['AllowedPattern']}: {check}"
        elif p["Type"] != "Number" and "AllowedValues" not in p:
            assert "no pattern" in check, f"{name}: the template has no pattern: {check}"
        if "MinValue" in p or "MaxValue" in p:
            assert f"{p['MinValue']} to {p['MaxValue']}" in check, f"{name}: range {p['MinValue']} to {p['MaxValue']}: {check}"
        patterns_in_doc = [c for c in code_names(check) if c.startswith("^")]
        if "AllowedPattern" not in p:
            assert not patterns_in_doc, f"{name}: the page shows a pattern the template does not have"


def test_template_rules_are_listed():
    rules = template().get("Rules", {})
    assert rules, "the template has no Rules"
    listed = [code_names(r["Rule"])[0] for r in table("Rules")]
    assert set(listed) == set(rules), f"rules: page {sorted(listed)}, template {sorted(rules)}"


def test_every_variable_the_code_reads_is_documented_and_no_other():
    doc = {name for function in FUNCTION_SOURCES for name in doc_variables(function)}
    reads = all_code_reads()
    for name, why in RESERVED.items():
        assert name in reads, f"{name} is listed as reserved ({why}) but the code no longer reads it"
    assert reads - doc == set(), f"read by the code, missing from the page: {sorted(reads - doc)}"
    assert doc - reads == set(), f"on the page, read by no code (stale rows): {sorted(doc - reads)}"


def test_each_function_table_lists_what_that_function_reads():
    for function, reads in function_reads().items():
        doc = set(doc_variables(function))
        assert reads - doc == set(), f"{function} reads {sorted(reads - doc)}, missing from its table"
        assert doc - reads == set(), f"{function}'s table lists {sorted(doc - reads)}, which it does not read"


def test_reserved_variables_are_said_to_be_set_by_lambda():
    for function in FUNCTION_SOURCES:
        for name, row in doc_variables(function).items():
            if name in RESERVED:
                assert row["Default"] == "set by Lambda" and row["Set by the template"] == "set by Lambda", row


def test_every_variable_the_template_sets_is_documented_with_its_parameter():
    tpl = template()
    params = set(tpl["Parameters"])
    for function, variables in template_variables(tpl).items():
        doc = doc_variables(function)
        for name, values in variables.items():
            assert name in doc, f"the template sets {name} on {function}; its table does not list it"
            cell = doc[name]["Set by the template"]
            assert "not set" not in cell, f"{function}: the page says {name} is not set; the template sets it"
            named = set(code_names(cell))
            for value in values:
                wanted = {r for r in refs(value) if r in params or r.startswith("AWS::")}
                missing = wanted - named
                assert not missing, f"{function}: {name} is set from {sorted(missing)}; the page says: {cell}"
                if isinstance(value, str):
                    assert f"`{value}`" in cell, f"{function}: {name} is always {value!r}; the page says: {cell}"
            allowed = set().union(*(refs(v) | condition_params(tpl, v) for v in values))
            bogus = {n for n in named if n in params} - allowed
            assert not bogus, f"{function}: {name} is not set from {sorted(bogus)}: {cell}"
        for name, row in doc.items():
            if name not in variables:
                assert row["Set by the template"] in ("not set", "set by Lambda"), (
                    f"{function}: the template does not set {name}; the page says: {row['Set by the template']}"
                )


def test_each_parameter_names_the_variables_it_sets():
    tpl = template()
    rows = {code_names(r["Parameter"])[0]: r["What it sets"] for r in table("Template parameters")}
    sets: dict[str, set[str]] = {}
    for variables in template_variables(tpl).values():
        for name, values in variables.items():
            for value in values:
                for ref in refs(value):
                    if ref in tpl["Parameters"]:
                        sets.setdefault(ref, set()).add(name)
    assert sets.get("TagPrefix") == {"TAG_PREFIX"}, sets.get("TagPrefix")
    for param, cell in rows.items():
        named = set(env_names(cell))
        expected = sets.get(param, set())
        assert expected <= named, f"{param} sets {sorted(expected - named)}; the page says: {cell}"
        assert named <= expected, f"{param} does not set {sorted(named - expected)}: {cell}"


def test_numeric_ranges_of_variables_match_the_code():
    nums = num_constants()
    found = {}
    for path in rust_files():
        text = non_test_text(path)
        for name, lo, hi in re.findall(r'\bvars\s*\.number\(\s*"([A-Z0-9_]+)",\s*([A-Z0-9_]+)\.\.=([A-Z0-9_]+)\)', text):
            value = lambda s: nums[s] if s in nums else int(s.replace("_", ""))  # noqa: E731
            found[name] = (value(lo), value(hi))
    consts = str_constants()
    for const, lo, hi in re.findall(r"\bvars\s*\.number\(\s*([A-Z][A-Z0-9_]*),\s*([0-9_]+)\.\.=([0-9_]+)\)", "\n".join(
        non_test_text(p) for p in rust_files()
    )):
        found[consts[const]] = (int(lo.replace("_", "")), int(hi.replace("_", "")))
    assert found.get("DNS_TIMEOUT_MS") == (50, 30000) and found.get("DESCRIBE_SHARE") == (1, 75), found
    assert "SECRETS_TTL_SECONDS" in found, found
    for function in FUNCTION_SOURCES:
        for name, row in doc_variables(function).items():
            if name in found and "as for target-sync" != row["Check"]:
                lo, hi = found[name]
                assert f"{lo} to {hi}" in row["Check"], f"{function}: {name} takes {lo} to {hi}: {row['Check']}"


FIELD_CALL = re.compile(r'\bf\s*\.(?:string|required_string|number|required_number|boolean|string_list|raw)\(\s*"([a-z_]+)"')
NUMBER_FIELD = re.compile(r'\bf\s*\.(?:number|required_number)\(\s*"([a-z_]+)",\s*([A-Z0-9_]+|[0-9_]+\.\.=[0-9_]+)\)')


def fields_of(path: str) -> tuple[set[str], dict[str, tuple[int, int]]]:
    text = non_test_text(ROOT / path)
    names = set(FIELD_CALL.findall(text))
    # The source fields, read in a loop: ["dns_name", "load_balancer", ...].
    for group in re.findall(r"let given: [^=]*= \[([^\]]*)\]", text):
        names |= set(re.findall(r'"([a-z_]+)"', group))
    ranges = {}
    consts = range_constants()
    for name, spec in NUMBER_FIELD.findall(text):
        if spec in consts:
            ranges[name] = consts[spec]
        else:
            lo, hi = spec.split("..=")
            ranges[name] = (int(lo.replace("_", "")), int(hi.replace("_", "")))
    return names, ranges


@pytest.mark.parametrize(
    "path, title, known",
    [
        ("shared/src/sync/mapping.rs", "Mappings (TARGETS)", {"dns_name", "vpc_endpoint", "target_group_arn", "port"}),
        ("shared/src/canary/config/endpoint.rs", "Canary endpoints", {"name", "url", "connect_to", "expect_status"}),
    ],
)
def test_fields_and_their_ranges_match_the_code(path, title, known):
    names, ranges = fields_of(path)
    assert known <= names, f"{path}: extracted {sorted(names)}"
    assert ranges, f"{path}: no numeric field found"
    rows = {code_names(r["Field"])[0]: r for r in table(title)}
    assert set(rows) == names, f"{title}: missing {sorted(names - set(rows))}, stale {sorted(set(rows) - names)}"
    for name, (lo, hi) in ranges.items():
        assert f"{lo} to {hi}" in rows[name]["Check"], f"{title}: {name} takes {lo} to {hi}: {rows[name]['Check']}"


def test_tags_are_the_ones_target_sync_reads():
    text = non_test_text(ROOT / "shared/src/sync/tags.rs")
    m = re.search(r"const SETTINGS: \[\(&str, &str\); (\d+)\] = \[(.*?)\];", text, re.S)
    assert m, "tags.rs has no SETTINGS table"
    pairs = re.findall(r'\(\s*"([a-z-]+)",\s*"([a-z_]+)"\s*\)', m.group(2))
    assert len(pairs) == int(m.group(1)), "SETTINGS was not read whole"
    suffixes = dict(pairs)
    # The opt-in tag: `format!("{prefix}source")`.
    opt_in = set(re.findall(r'format!\("\{prefix\}([a-z-]+)"\)', text))
    assert opt_in == {"source"}, opt_in
    assert {"port", "record-types", "source-role"} <= set(suffixes)

    rows = {}
    for row in table("Target group tags"):
        tag = code_names(row["Tag"])[0]
        assert tag.startswith("<TAG_PREFIX>"), tag
        rows[tag.removeprefix("<TAG_PREFIX>")] = row
    assert set(rows) == set(suffixes) | opt_in, (
        f"tags: missing {sorted((set(suffixes) | opt_in) - set(rows))}, stale {sorted(set(rows) - set(suffixes) - opt_in)}"
    )
    for suffix, field in suffixes.items():
        assert code_names(rows[suffix]["`TARGETS` field"]) == [field], f"{suffix} is the field {field}"
