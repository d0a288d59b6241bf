"""Failover: the endpoint alarms, the record's CALCULATED health check over
every endpoint, the certificate alarms, and the agreement between the
template's defaults and the model in shared/src/canary/failover.rs (whose
property tests and README figures assume those defaults)."""

import re

import pytest
from samcli.lib.cfn_language_extensions.api import process_template

from evaluate import conditions
from render import PARAMETERS, ROOT, load, render

MODEL = ROOT / "shared/src/canary/failover.rs"
CANARY = ROOT / "shared/src/canary/mod.rs"
# Route 53: child health checks per calculated health check ("Quotas on
# health checks", Route 53 developer guide; the API model allows 256).
ROUTE53_CHILDREN = 255
# CloudFormation: resources declared in a template.
CFN_RESOURCES = 500
FAILOVER = {"HostedZoneId": "Z0123456789ABCDEFGHIJ", "RecordName": "api.example.com",
            "RecordTarget": "vpce-0123.execute-api.us-east-1.vpce.amazonaws.com"}


def rust_const(path, name):
    """The value of `pub const NAME: type = value;` in a Rust file."""
    match = re.search(rf"pub const {name}: [^=]+= ([^;]+);", path.read_text())
    assert match, f"{path.name} has no const {name}"
    return match.group(1).replace("_", "")


@pytest.fixture(scope="module")
def rendered():
    return render()


def expanded(params):
    """The template as SAM CLI's implementation of AWS::LanguageExtensions
    expands it for these parameters (what `sam validate`, `sam build` and
    `sam package` work on): Fn::ForEach, Fn::Length, Fn::If on known
    conditions, and Ref built from intrinsic functions all resolved."""
    from samcli.yamlhelper import yaml_parse

    values = {k: v for k, v in {**PARAMETERS, **params}.items()}
    return process_template(yaml_parse((ROOT / "template.yaml").read_text()), parameter_values=values)


def test_the_model_uses_the_template_defaults(rendered):
    """failover.rs proves its properties (no failover on one failed probe,
    failover within 3 minutes, slower failback) and computes the README's
    figures for these values: a change on one side only fails here."""
    declared = load()["Parameters"]
    pairs = {
        "PROBES_PER_INVOCATION": "ProbesPerInvocation",
        "PROBE_INTERVAL_MS": "ProbeIntervalMs",
        "SUCCESS_THRESHOLD": "SuccessThreshold",
        "ALARM_EVALUATION_PERIODS": "AlarmEvaluationPeriods",
        "ALARM_DATAPOINTS_TO_ALARM": "AlarmDatapointsToAlarm",
        "FAILOVER_HEALTH_THRESHOLD": "FailoverHealthThreshold",
    }
    for const, parameter in pairs.items():
        assert float(rust_const(MODEL, const)) == float(declared[parameter]["Default"]), (const, parameter)
    alarm = rendered["Resources"]["EndpointAlarmorders"]["Properties"]
    assert alarm["EvaluationPeriods"] == {"Ref": "AlarmEvaluationPeriods"}
    assert alarm["DatapointsToAlarm"] == {"Ref": "AlarmDatapointsToAlarm"}
    assert alarm["Threshold"] == {"Ref": "SuccessThreshold"}
    assert (alarm["Statistic"], alarm["ComparisonOperator"]) == ("Average", "LessThanThreshold")
    assert int(rust_const(MODEL, "PERIOD_MS")) == alarm["Period"] * 1000
    assert rust_const(MODEL, "TREAT_MISSING_DATA") == {"breaching": "MissingData::Breaching"}[alarm["TreatMissingData"]]
    env = rendered["Resources"]["HealthCanaryFunction"]["Properties"]["Environment"]["Variables"]
    assert env["PROBES_PER_INVOCATION"] == {"Ref": "ProbesPerInvocation"}
    assert env["PROBE_INTERVAL_MS"] == {"Ref": "ProbeIntervalMs"}


def test_the_failover_record_follows_every_endpoint():
    """The record's health check is CALCULATED over every endpoint's health
    check, in order, whatever their number; healthy while all are (the
    default) or FailoverHealthThreshold of them."""
    for names in (["orders"], ["orders", "billing"], [f"endpoint{i:03d}service" for i in range(150)]):
        for threshold, expected in (("0", len(names)), ("1", 1)):
            res = expanded({**FAILOVER, "CanaryEndpoints": ",".join(names), "FailoverHealthThreshold": threshold})["Resources"]
            config = res["FailoverCalculatedHealthCheck"]["Properties"]["HealthCheckConfig"]
            assert config["Type"] == "CALCULATED"
            assert config["ChildHealthChecks"] == [{"Ref": f"EndpointHealthCheck{n}"} for n in names]
            assert int(config["HealthThreshold"]) == expected
            assert res["FailoverRecord"]["Properties"]["HealthCheckId"] == {"Ref": "FailoverCalculatedHealthCheck"}
            assert all(res[f"EndpointHealthCheck{n}"]["Properties"]["HealthCheckConfig"]["Type"] == "CLOUDWATCH_METRIC"
                       for n in names)


def eager(node, params, lists):
    """Evaluates Fn::Sub (with a variable map), Fn::Join, Fn::Split,
    Fn::Select and Ref to a parameter the way the AWS::LanguageExtensions
    transform does: everything, whatever the conditions say. It fails the
    transform on a Select out of range ("Fn::Select cannot select
    nonexistent value", cfn-language-discussion #159), and so this fails."""
    if isinstance(node, str):
        return node
    (fn, args), = node.items()
    if fn == "Ref":
        value = params[args]
        return value.split(",") if args in lists else value
    if fn == "Fn::Join":
        items = eager(args[1], params, lists) if isinstance(args[1], dict) else [eager(a, params, lists) for a in args[1]]
        return args[0].join(items)
    if fn == "Fn::Split":
        return eager(args[1], params, lists).split(args[0])
    if fn == "Fn::Select":
        items = eager(args[1], params, lists)
        assert int(args[0]) < len(items), f"Fn::Select {args[0]} of {items}"
        return items[int(args[0])]
    if fn == "Fn::Sub":
        text, variables = args
        values = {k: eager(v, params, lists) for k, v in variables.items()}
        return re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], text)
    raise AssertionError(f"cannot evaluate {fn}")


def test_every_slot_builds_an_existing_health_check_whatever_the_endpoints():
    """Fn::ForEach cannot produce a list, so the children are written out as
    slots: slot i holds the health check of item i of CanaryEndpoints where
    the condition FailoverChild<i> says it exists, and is dropped elsewhere.
    The transform builds every slot's Ref before any condition applies, also
    in stacks without a failover record: each must select in range and name
    a health check the stack declares, for every list of endpoints."""
    template = load()
    lists = {k for k, v in template["Parameters"].items() if v["Type"] == "CommaDelimitedList"}
    children = template["Resources"]["FailoverCalculatedHealthCheck"]["Properties"]["HealthCheckConfig"]["ChildHealthChecks"]
    loop = template["Conditions"]["Fn::ForEach::FailoverChildren"]
    assert loop[1] == [str(i) for i in range(len(children))]
    for names in ([""], ["a"], ["a", "b", "c"], [f"e{i}" for i in range(len(children))]):
        params = {**PARAMETERS, **FAILOVER, "CanaryEndpoints": ",".join(names)}
        rendered = render(params)
        declared, held = set(rendered["Resources"]), conditions(rendered, params)
        for i, slot in enumerate(children):
            condition, built, dropped = slot["Fn::If"]
            assert (condition, dropped) == (f"FailoverChild{i}", {"Ref": "AWS::NoValue"}), i
            assert held[condition] is (i < len(names) and names != [""]), (i, names)
            logical = eager(built["Ref"], params, lists)
            assert logical in declared, (i, names, logical)
            if held[condition]:
                assert logical == f"EndpointHealthCheck{names[i]}", (i, names)


def test_there_is_a_slot_for_every_endpoint_a_stack_can_hold():
    """As many slots as the most endpoints CloudFormation's resource quota
    leaves room for, and no more children than Route 53 allows."""
    children = load()["Resources"]["FailoverCalculatedHealthCheck"]["Properties"]["HealthCheckConfig"]["ChildHealthChecks"]
    one, two = (len(render({"CanaryEndpoints": n})["Resources"]) for n in ("a", "a,b"))
    per_endpoint, fixed = two - one, one - (two - one)
    most = (CFN_RESOURCES - fixed) // per_endpoint
    assert most <= len(children) <= ROUTE53_CHILDREN, (most, len(children))


def test_endpoint_alarms_fail_over_on_m_of_n_minutes_and_back_on_n_good_ones(rendered):
    declared = load()["Parameters"]
    assert int(declared["AlarmDatapointsToAlarm"]["Default"]) < int(declared["AlarmEvaluationPeriods"]["Default"])
    alarm = rendered["Resources"]["EndpointAlarmbilling"]["Properties"]
    assert (alarm["MetricName"], alarm["Dimensions"]) == ("Success", [{"Name": "Endpoint", "Value": "billing"}])
    check = rendered["Resources"]["EndpointHealthCheckbilling"]["Properties"]["HealthCheckConfig"]
    assert check["AlarmIdentifier"]["Name"] == {"Ref": "EndpointAlarmbilling"}
    # No alarm on the first endpoint only any more.
    assert "FailoverAlarm" not in rendered["Resources"]


def test_certificate_expiry_alarms_per_endpoint(rendered):
    """The canary publishes CertificateExpiryDays per endpoint (https, once a
    handshake completed); missing data keeps the state (an http endpoint has
    none, an expired or unreachable one must not turn OK)."""
    metric = rust_const(CANARY, "METRIC_CERT_EXPIRY").strip('"')
    dimension = rust_const(CANARY, "DIMENSION").strip('"')
    for name in ("orders", "billing"):
        res = rendered["Resources"][f"CertificateAlarm{name}"]
        props = res["Properties"]
        assert res["Condition"] == "HasCanaryEndpoints"
        assert (props["MetricName"], props["Dimensions"]) == (metric, [{"Name": dimension, "Value": name}])
        assert (props["Statistic"], props["ComparisonOperator"]) == ("Minimum", "LessThanThreshold")
        assert props["Threshold"] == {"Ref": "CertificateExpiryAlarmDays"}
        assert props["TreatMissingData"] == "ignore"
        assert "AlarmActions" in props and "OKActions" in props
    assert load()["Parameters"]["CertificateExpiryAlarmDays"]["MinValue"] >= 1


def test_failover_parameters_are_grouped_and_described():
    template = load()
    groups = {p for g in template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"] for p in g["Parameters"]}
    for name in ("AlarmDatapointsToAlarm", "FailoverHealthThreshold", "CertificateExpiryAlarmDays"):
        assert name in groups and template["Parameters"][name]["Description"], name
    assert template["Parameters"]["FailoverHealthThreshold"]["MaxValue"] <= ROUTE53_CHILDREN


def test_a_rule_keeps_datapoints_to_alarm_within_the_evaluation_periods():
    """CloudWatch refuses DatapointsToAlarm > EvaluationPeriods, half-way
    through a deploy: the rule refuses it before anything is created."""
    assertion = load()["Rules"]["AlarmDatapointsWithinPeriods"]["Assertions"][0]["Assert"]

    def holds(node, params):
        (fn, args), = node.items()
        value = lambda a: params[a["Ref"]] if isinstance(a, dict) else a
        if fn == "Fn::Or":
            return any(holds(a, params) for a in args)
        if fn == "Fn::And":
            return all(holds(a, params) for a in args)
        if fn == "Fn::Equals":
            return value(args[0]) == value(args[1])
        if fn == "Fn::Contains":
            return value(args[1]) in args[0]
        raise AssertionError(fn)

    declared = load()["Parameters"]
    low, high = declared["AlarmEvaluationPeriods"]["MinValue"], declared["AlarmEvaluationPeriods"]["MaxValue"]
    assert (low, high) == (declared["AlarmDatapointsToAlarm"]["MinValue"], declared["AlarmDatapointsToAlarm"]["MaxValue"])
    for n in range(low, high + 1):
        for m in range(low, high + 1):
            params = {"AlarmEvaluationPeriods": str(n), "AlarmDatapointsToAlarm": str(m)}
            assert holds(assertion, params) is (m <= n), (n, m)
