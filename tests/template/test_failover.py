"""Failover: one region alarm that Route 53 reads the same way as CloudWatch,
one CLOUDWATCH_METRIC health check behind the record, the settings Route 53
copies reaching it, one canary function per subnet, the operator's override,
and the agreement between the template's defaults and the model in
shared/src/canary/failover.rs (whose properties and documented figures assume
those defaults)."""

import json
import re
import shlex

import pytest

from evaluate import conditions, created, value_of
from render import ATTRIBUTES, PARAMETERS, ROOT, load, render

MODEL = ROOT / "shared/src/canary/failover.rs"
PUBLISH = ROOT / "shared/src/canary/publish.rs"
# Route 53 CLOUDWATCH_METRIC health checks: alarms on one standard-resolution
# metric with one of these statistics (AlarmIdentifier, Route 53 API reference).
ROUTE53_STATISTICS = {"Average", "Minimum", "Maximum", "Sum", "SampleCount"}
# What Route 53 copies into CloudWatchAlarmConfiguration (Route 53 API reference).
COPIED = ("ComparisonOperator", "EvaluationPeriods", "MetricName", "Namespace", "Period", "Statistic", "Threshold",
          "Dimensions")
# The fixed settings that the alarm name's "v1" stands for: change one and the version with it.
V1 = {"ComparisonOperator": "GreaterThanThreshold", "MetricName": "RegionUnhealthy", "Period": 60, "Statistic": "Sum",
      "Threshold": 0, "DimensionNames": ["Stack"]}
FAILOVER = {"HostedZoneId": "Z0123456789ABCDEFGHIJ", "RecordName": "api.example.com",
            "RecordTarget": "vpce-0123.execute-api.us-east-1.vpce.amazonaws.com"}


def rust_const(path, name):
    """The value of `pub const NAME: type = value;` in a Rust file."""
    match = re.search(rf"pub const {name}: [^=]+= ([^;]+);", path.read_text())
    assert match, f"{path.name} has no const {name}"
    return match.group(1).replace("_", "").strip('"')


@pytest.fixture(scope="module")
def rendered():
    return render()


def defaults():
    return {k: str(v.get("Default", "")) for k, v in load()["Parameters"].items()}


def region_alarm(rendered):
    return rendered["Resources"]["RegionAlarm"]["Properties"]


def health_check_as_deployed(params, stack="tether"):
    """The health check's properties as CloudFormation resolves them for
    these parameters: the Ref to the alarm is its name."""
    rendered = render(params)
    held = conditions(rendered, params)
    config = rendered["Resources"]["RegionHealthCheck"]["Properties"]["HealthCheckConfig"]
    assert config["AlarmIdentifier"]["Name"] == {"Ref": "RegionAlarm"}
    name = region_alarm(rendered)["AlarmName"]["Fn::Sub"]
    values = {**defaults(), **params, "AWS::StackName": stack}
    resolved = re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], name)
    return {**config, "AlarmIdentifier": {"Name": resolved, "Region": "us-east-1"}}, held


def test_the_model_uses_the_template_defaults(rendered):
    """failover.rs proves its properties and computes the figures of docs/failover.md
    for these values: a change on one side only fails here."""
    declared = load()["Parameters"]
    for const, parameter in {"PROBES_PER_INVOCATION": "ProbesPerInvocation", "PROBE_INTERVAL_MS": "ProbeIntervalMs",
                             "SUCCESS_THRESHOLD": "SuccessThreshold", "FAILBACK_MINUTES": "FailbackMinutes",
                             "EVALUATION_PERIODS": "AlarmEvaluationPeriods"}.items():
        assert float(rust_const(MODEL, const)) == float(declared[parameter]["Default"]), (const, parameter)
    alarm = region_alarm(rendered)
    assert int(rust_const(MODEL, "PERIOD_MS")) == alarm["Period"] * 1000
    assert float(rust_const(MODEL, "ALARM_THRESHOLD")) == alarm["Threshold"]
    assert (alarm["Statistic"], alarm["ComparisonOperator"]) == ("Sum", "GreaterThanThreshold")
    # The model's Route 53 reading of M of N holds because the alarm's M is its N.
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == {"Ref": "AlarmEvaluationPeriods"}
    assert alarm["MetricName"] == rust_const(PUBLISH, "METRIC_REGION")
    assert alarm["Dimensions"] == [{"Name": rust_const(PUBLISH, "DIMENSION_STACK"), "Value": {"Ref": "AWS::StackName"}}]
    for slot in ("HealthCanaryFunction", "HealthCanaryFunction1", "HealthCanaryFunction2"):
        env = rendered["Resources"][slot]["Properties"]["Environment"]["Variables"]
        assert env["PROBES_PER_INVOCATION"] == {"Ref": "ProbesPerInvocation"}
        assert env["PROBE_INTERVAL_MS"] == {"Ref": "ProbeIntervalMs"}
        assert env["SUCCESS_THRESHOLD"] == {"Ref": "SuccessThreshold"}
        assert env["FAILBACK_MINUTES"] == {"Ref": "FailbackMinutes"}
        assert env["STACK_NAME"] == {"Ref": "AWS::StackName"}


def test_one_cloudwatch_metric_health_check_on_one_alarm_route53_accepts(rendered):
    """No CALCULATED check and none per endpoint: the record's health check
    reads the region alarm, whose missing data is unhealthy."""
    res = rendered["Resources"]
    checks = {k: v for k, v in res.items() if v["Type"] == "AWS::Route53::HealthCheck"}
    assert list(checks) == ["RegionHealthCheck"]
    config = checks["RegionHealthCheck"]["Properties"]["HealthCheckConfig"]
    assert (config["Type"], config["InsufficientDataHealthStatus"]) == ("CLOUDWATCH_METRIC", "Unhealthy")
    assert config["AlarmIdentifier"] == {"Name": {"Ref": "RegionAlarm"}, "Region": {"Ref": "AWS::Region"}}
    assert res["FailoverRecord"]["Properties"]["HealthCheckId"] == {"Ref": "RegionHealthCheck"}
    alarm = region_alarm(rendered)
    assert "Metrics" not in alarm and "ExtendedStatistic" not in alarm, "one metric, no metric math"
    assert alarm["Statistic"] in ROUTE53_STATISTICS and alarm["Period"] == 60
    assert alarm["TreatMissingData"] == "breaching", "a silent canary pages"
    assert "AlarmActions" in alarm and "OKActions" in alarm
    text = (ROOT / "template.yaml").read_text()
    assert "Fn::ForEach" not in text and "Fn::Length" not in text and "CALCULATED" not in text
    assert load()["Transform"] == "AWS::Serverless-2016-10-31", "the SAM transform only"


def test_the_canary_publishes_standard_resolution_data():
    """Route 53 refuses alarms on high-resolution metrics."""
    assert ".storage_resolution(60)" in (ROOT / "shared/src/metrics.rs").read_text()


def parameters_in(node):
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] in load()["Parameters"]:
            yield node["Ref"]
        for v in node.values():
            yield from parameters_in(v)
    elif isinstance(node, list):
        for v in node:
            yield from parameters_in(v)


def another_value(declared, name, value):
    spec = declared[name]
    if "AllowedValues" in spec:
        return next(str(v) for v in spec["AllowedValues"] if str(v) != value)
    if spec["Type"] == "Number":
        low, high = int(spec["MinValue"]), int(spec["MaxValue"])
        return str(low if int(value) != low else high)
    other = value + "Other"
    assert re.fullmatch(spec["AllowedPattern"], other), (name, other)
    return other


def test_every_setting_route53_copies_reaches_the_health_check(rendered):
    """Route 53 copies the alarm's settings only when the health check is
    created or updated. Every parameter behind a copied setting changes the
    health check's properties (its alarm's name), so CloudFormation calls
    UpdateHealthCheck; the fixed settings are what the name's v1 stands for."""
    alarm = region_alarm(rendered)
    behind = {p for key in COPIED for p in parameters_in(alarm[key])}
    assert behind == {"MetricsNamespace", "AlarmEvaluationPeriods"}, behind
    declared = load()["Parameters"]
    base = {**PARAMETERS, **FAILOVER}
    before, _ = health_check_as_deployed(base)
    for name in sorted(behind):
        changed = {**base, name: another_value(declared, name, base.get(name, str(declared[name]["Default"])))}
        after, _ = health_check_as_deployed(changed)
        assert after != before, f"changing {name} leaves the health check as it was"
        assert changed[name] in after["AlarmIdentifier"]["Name"]
    fixed = {k: alarm[k] for k in ("ComparisonOperator", "MetricName", "Period", "Statistic", "Threshold")}
    fixed["DimensionNames"] = [d["Name"] for d in alarm["Dimensions"]]
    assert fixed == V1, "a fixed setting changed: change v1 in the alarm name (and V1 here) with it"
    assert "-v1-" in alarm["AlarmName"]["Fn::Sub"]
    # Dimension values cannot change for a stack's life: its name.
    assert [d["Value"] for d in alarm["Dimensions"]] == [{"Ref": "AWS::StackName"}]


def test_the_alarm_name_is_unique_per_account_and_region_and_within_255_characters():
    """Alarm names are unique per account and region, as stack names are;
    the longest stack name (128) with the longest namespace the parameter
    allows still fits CloudWatch's 255."""
    template = load()
    name = template["Resources"]["RegionAlarm"]["Properties"]["AlarmName"]["Fn::Sub"]
    assert name.startswith("${AWS::StackName}-")
    declared = template["Parameters"]
    longest_namespace = int(re.search(r"\{1,(\d+)\}", declared["MetricsNamespace"]["AllowedPattern"]).group(1))
    longest = {"AWS::StackName": "s" * 128, "MetricsNamespace": "n" * longest_namespace,
               "AlarmEvaluationPeriods": str(declared["AlarmEvaluationPeriods"]["MaxValue"])}
    assert len(re.sub(r"\$\{([^}]+)\}", lambda m: longest[m.group(1)], name)) <= 255


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_one_canary_function_in_each_of_the_first_three_subnets(count):
    """Every zone of the subnets votes (up to three); the functions differ
    only in their subnet."""
    subnets = [f"subnet-0123456789abcdef{i}" for i in range(count)]
    params = {**PARAMETERS, "SubnetIds": ",".join(subnets)}
    rendered = render(params)
    made = created(rendered, params)
    slots = [k for k in ("HealthCanaryFunction", "HealthCanaryFunction1", "HealthCanaryFunction2") if k in made]
    assert len(slots) == min(count, 3)
    held = conditions(rendered, params)
    first = None
    for i, slot in enumerate(slots):
        props = json.loads(json.dumps(rendered["Resources"][slot]["Properties"]))
        vpc = props.pop("VpcConfig")
        assert vpc["SecurityGroupIds"] == {"Fn::If": ["InVpc", {"Ref": "SecurityGroupIds"}, {"Ref": "AWS::NoValue"}]}
        assert held["InVpc"]
        assert [value_of(s, params, rendered, held, ATTRIBUTES) for s in vpc["SubnetIds"]] == [subnets[i]]
        assert vpc["Ipv6AllowedForDualStack"] == {"Ref": "Ipv6AllowedForDualStack"}
        first = first or props
        assert props == first, slot
    # The errors alarm covers every slot that exists.
    metrics = rendered["Resources"]["CanaryErrorsAlarm"]["Properties"]["Metrics"]
    kept = [m["Fn::If"][1] if "Fn::If" in m else m for m in metrics if "Fn::If" not in m or held[m["Fn::If"][0]]]
    watched = [m["MetricStat"]["Metric"]["Dimensions"][0]["Value"] for m in kept if "MetricStat" in m]
    assert watched == [{"Ref": s} for s in slots]


def test_alarms_page_on_the_region_and_one_certificate_metric_never_per_endpoint(rendered):
    alarms = [v["Properties"] for v in rendered["Resources"].values() if v["Type"] == "AWS::CloudWatch::Alarm"]
    canary = {a["MetricName"]: a for a in alarms if a.get("MetricName") in
              {"RegionUnhealthy", "SoonestCertificateExpiryDays", "DegradedEndpoints"}}
    assert set(canary) == {"RegionUnhealthy", "SoonestCertificateExpiryDays", "DegradedEndpoints"}
    assert not [a for a in alarms if any(d["Name"] == "Endpoint" for d in a.get("Dimensions", []))]
    cert = canary["SoonestCertificateExpiryDays"]
    assert (cert["Statistic"], cert["ComparisonOperator"], cert["TreatMissingData"]) == ("Minimum", "LessThanThreshold", "ignore")
    assert cert["Threshold"] == {"Ref": "CertificateExpiryAlarmDays"}
    for metric in ("SoonestCertificateExpiryDays", "DegradedEndpoints"):
        assert rust_const(PUBLISH, {"SoonestCertificateExpiryDays": "METRIC_SOONEST_EXPIRY",
                                    "DegradedEndpoints": "METRIC_DEGRADED"}[metric]) == metric
        assert canary[metric]["Dimensions"] == [{"Name": "Stack", "Value": {"Ref": "AWS::StackName"}}]


def test_the_runbooks_override_is_the_alarms_metric_and_the_stack_output(rendered):
    """The runbook's put-metric-data command (docs/operations.md), the FailOutCommand output and
    the alarm agree: the metric, its dimension, and a value that outweighs
    every zone's vote (the model's OVERRIDE_VALUE)."""
    readme = (ROOT / "docs" / "operations.md").read_text()
    commands = [line.strip().rstrip("\\").strip() for line in readme.splitlines() if "aws cloudwatch put-metric-data" in line]
    assert commands, "the runbook gives the command"
    output = rendered["Outputs"]["FailOutCommand"]["Value"]["Fn::Sub"]
    deployed = re.sub(r"\$\{([^}]+)\}", lambda m: {"AWS::Region": "us-east-1", "MetricsNamespace": "Tether",
                                                   "AWS::StackName": "tether"}[m.group(1)], output)
    assert deployed in readme, deployed
    alarm = region_alarm(rendered)
    override = float(rust_const(MODEL, "OVERRIDE_VALUE"))
    for command in commands:
        words = shlex.split(command.split("put-metric-data", 1)[1].split(";")[0])
        args = dict(zip(words[::2], words[1::2]))
        assert args["--metric-name"] == alarm["MetricName"], command
        assert args["--dimensions"].split("=")[0] == alarm["Dimensions"][0]["Name"], command
        assert abs(float(args["--value"])) == override, command


def test_the_failover_record_needs_the_canary():
    rule = load()["Rules"]["FailoverRecordNeedsItsParts"]
    assert "CanaryTargetsS3Uri" in json.dumps(rule)
    assert conditions(load(), {**defaults(), **FAILOVER, "CanaryTargets": ""})["CreateFailoverRecord"] is False
    assert conditions(load(), {**defaults(), **FAILOVER, "CanaryTargetsS3Uri": "s3://b0/k"})["CreateFailoverRecord"]


def test_the_canary_is_told_the_failover_records_name():
    """The canary refuses to probe its own failover record (Route 53 calls
    that unpredictable): it gets the name, empty without a record."""
    for params, expected in (({**PARAMETERS, **FAILOVER}, "api.example.com"), ({**PARAMETERS, "HostedZoneId": ""}, "")):
        rendered = render(params)
        held = conditions(rendered, params)
        env = rendered["Resources"]["HealthCanaryFunction"]["Properties"]["Environment"]["Variables"]
        assert value_of(env["FAILOVER_RECORD_NAME"], params, rendered, held, {}) == expected


def test_failover_parameters_are_grouped_and_described():
    template = load()
    groups = {p for g in template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"] for p in g["Parameters"]}
    for name in ("AlarmEvaluationPeriods", "FailbackMinutes", "CertificateExpiryAlarmDays", "Ipv6AllowedForDualStack"):
        assert name in groups and template["Parameters"][name]["Description"], name
    assert set(groups) == set(template["Parameters"]), set(template["Parameters"]) ^ set(groups)
    for gone in ("CanaryEndpoints", "AlarmDatapointsToAlarm", "FailoverHealthThreshold"):
        assert gone not in template["Parameters"], gone
