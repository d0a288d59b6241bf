"""The SAM template, rendered as CloudFormation would deploy it: least
privilege per function, schedules, the state bucket, and agreement between
the template's functions and the Cargo workspace.

A change that widens a policy, adds a function the workspace cannot build,
or loosens the bucket makes one of these fail."""

import json
import re
import subprocess

import pytest

from evaluate import conditions, created, value_of, worst_case_text
from render import PARAMETERS, ROOT, load, render

BASIC = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
VPC = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
FUNCTIONS = {"TargetSyncFunction": "target-sync", "HealthCanaryFunction": "health-canary", "CustomResourcesFunction": "custom-resources"}
# One canary function per subnet: the first slot, and the others of the same binary.
CANARY_SLOTS = {"HealthCanaryFunction1": "health-canary", "HealthCanaryFunction2": "health-canary"}
# The only actions AWS offers no resource-level permission for, and so may be on "*".
STAR_OK = {
    "tag:GetResources", "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:DescribeLoadBalancers",
    "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcEndpoints", "cloudwatch:PutMetricData", "cloudwatch:GetMetricData",
}
REGISTER = {"elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"}
# What target-sync publishes per run (dimension FunctionName), as in /work/notes/contract.md.
# The fleet totals: a fixed set whatever the number of target groups.
PER_RUN_METRICS = {"FailedMappings", "SyncedGroups", "SaturatedMappings", "HeldBackTargets", "PendingDeregistrations",
                   "DeferredGroups", "Registrations", "Deregistrations"}


@pytest.fixture(scope="module")
def rendered():
    return render()


def as_list(x):
    return x if isinstance(x, list) else [x]


def policy_document(doc):
    """A policy document as a dict. One given as a string (Fn::Sub over JSON
    text, for a condition key built from a parameter) is parsed with its
    ${...} placeholders left in place: they sit inside JSON strings."""
    if isinstance(doc, dict) and "Fn::Sub" in doc:
        sub = doc["Fn::Sub"]
        return json.loads(sub if isinstance(sub, str) else sub[0])
    return doc


def sub_variables(doc):
    """The variable map of a policy document given as Fn::Sub [text, map]."""
    if isinstance(doc, dict) and isinstance(doc.get("Fn::Sub"), list):
        return doc["Fn::Sub"][1]
    return {}


def managed_policies_of(rendered, role):
    return [r for r in rendered["Resources"].values()
            if r["Type"] == "AWS::IAM::ManagedPolicy" and {"Ref": role} in r["Properties"]["Roles"]]


def statements_of(rendered, role):
    """Every Allow statement that reaches `role`: its inline policies and the managed policies attached to it."""
    resources = rendered["Resources"]
    out = []
    for policy in resources[role]["Properties"].get("Policies", []):
        if "Fn::If" in policy:  # a conditional policy: every condition holds in the full render
            policy = policy["Fn::If"][1]
        out += as_list(policy_document(policy["PolicyDocument"])["Statement"])
    for res in managed_policies_of(rendered, role):
        out += as_list(policy_document(res["Properties"]["PolicyDocument"])["Statement"])
    assert all(s["Effect"] == "Allow" for s in out)
    return out


def actions(statements):
    return {a for s in statements for a in as_list(s["Action"])}


def evaluate(node):
    """Evaluates Fn::Select/Split/Join/Sub over literals, as CloudFormation
    would; None when a value depends on something unknown here. A Select
    past the end fails the test, as it fails the deployment."""
    if isinstance(node, str):
        return node
    if not isinstance(node, dict) or len(node) != 1:
        return None
    (fn, args), = node.items()
    if fn == "Fn::Sub" and isinstance(args, str) and "${" not in args:
        return args
    if fn == "Fn::Join":
        parts = [evaluate(p) for p in args[1]]
        return None if None in parts else args[0].join(parts)
    if fn == "Fn::Split":
        text = evaluate(args[1])
        return None if text is None else text.split(args[0])
    if fn == "Fn::Select":
        items = evaluate(args[1])
        if items is None:
            return None
        index = int(args[0])
        assert index < len(items), f"Fn::Select {index} of {items}"
        return items[index]
    return None


def selects(node):
    if isinstance(node, dict):
        if "Fn::Select" in node:
            yield node
        for v in node.values():
            yield from selects(v)
    elif isinstance(node, list):
        for v in node:
            yield from selects(v)


def test_every_function_is_a_workspace_binary_built_by_cargo_lambda():
    """The fast path of `sam build`: each function's build points at a binary of the workspace."""
    metadata = json.loads(subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout)
    binaries = {t["name"] for p in metadata["packages"] for t in p["targets"] if "bin" in t["kind"] and p["manifest_path"].startswith(str(ROOT / "functions"))}
    template = load()
    globals_ = template["Globals"]["Function"]
    assert (globals_["Runtime"], globals_["Architectures"], globals_["Handler"]) == ("provided.al2023", ["arm64"], "bootstrap")
    assert (ROOT / globals_["CodeUri"] / "Cargo.toml").read_text().startswith("[workspace]")
    functions = {k: v for k, v in template["Resources"].items() if isinstance(v, dict) and v["Type"] == "AWS::Serverless::Function"}
    assert {k: v["Metadata"]["BuildProperties"]["Binary"] for k, v in functions.items()} == FUNCTIONS | CANARY_SLOTS
    assert all(v["Metadata"]["BuildMethod"] == "rust-cargolambda" for v in functions.values())
    assert set(FUNCTIONS.values()) == binaries


def test_no_broad_managed_policies(rendered):
    for name, res in rendered["Resources"].items():
        if res["Type"] == "AWS::IAM::Role":
            # Given as Fn::Sub over the partition, or literal (as SAM makes them).
            arns = {a["Fn::Sub"].replace("${AWS::Partition}", "aws") if isinstance(a, dict) else a
                    for a in res["Properties"].get("ManagedPolicyArns", [])}
            assert arns <= {BASIC, VPC}, f"{name}: {arns}"


def test_only_actions_without_resource_level_permissions_are_on_star(rendered):
    for role in [r for r, v in rendered["Resources"].items() if v["Type"] == "AWS::IAM::Role"]:
        for s in statements_of(rendered, role):
            for a in as_list(s["Action"]):
                assert a != "*" and not a.endswith(":*"), f"{role}: wildcard action {a}"
            if "*" in as_list(s["Resource"]):
                assert actions([s]) <= STAR_OK, f"{role}: {actions([s])} on *"


def test_metrics_only_into_the_namespace(rendered):
    for role in ["TargetSyncFunctionRole", "HealthCanaryFunctionRole", "CustomResourcesFunctionRole"]:
        metric = [s for s in statements_of(rendered, role) if "cloudwatch:PutMetricData" in as_list(s["Action"])]
        assert metric, role
        for s in metric:
            assert s["Condition"] in (
                {"StringEquals": {"cloudwatch:namespace": {"Ref": "MetricsNamespace"}}},
                {"StringEquals": {"cloudwatch:namespace": "${MetricsNamespace}"}},
            ), role


def test_register_and_deregister_only_on_target_groups_carrying_the_source_tag(rendered):
    """One statement for every opted-in group: the targetgroup resource with
    aws:ResourceTag/<TagPrefix>source present (ELB v2 service authorization reference)."""
    for role in ["TargetSyncFunctionRole", "CustomResourcesFunctionRole"]:
        elb = [s for s in statements_of(rendered, role) if actions([s]) & REGISTER]
        assert len(elb) == 1, role
        assert set(as_list(elb[0]["Action"])) == REGISTER
        assert elb[0]["Resource"] == "arn:${AWS::Partition}:elasticloadbalancing:${AWS::Region}:${AWS::AccountId}:targetgroup/*/*"
        assert elb[0]["Condition"] == {"Null": {"aws:ResourceTag/${TagPrefix}source": "false"}}
    assert not actions(statements_of(rendered, "HealthCanaryFunctionRole")) & REGISTER


def test_one_engine_policy_for_any_number_of_target_groups(rendered):
    """No per-mapping policies and no Fn::ForEach over mappings: the engine's
    permissions are one managed policy, on the function and on the first sync."""
    template = load()
    assert "Mappings" not in template["Parameters"]
    assert not [k for k in template["Resources"] if k.startswith("Fn::ForEach::")]
    engine = rendered["Resources"]["TargetSyncEnginePolicy"]["Properties"]
    assert engine["Roles"] == [{"Ref": "TargetSyncFunctionRole"}, {"Ref": "CustomResourcesFunctionRole"}]
    assert actions(policy_document(engine["PolicyDocument"])["Statement"]) == STAR_OK - {"cloudwatch:GetMetricData"} | REGISTER | {
        "s3:GetObject", "s3:PutObject", "s3:ListBucket"}


@pytest.mark.parametrize("prefix", ["tether:", "a", "staging tether/=+@._-:", "x" * 64])
def test_the_policy_is_valid_json_for_every_allowed_tag_prefix(prefix):
    """Fn::Sub fills the prefix into JSON text: TagPrefix's AllowedPattern must keep the result valid JSON."""
    template = load()
    pattern = template["Parameters"]["TagPrefix"]["AllowedPattern"]
    assert re.fullmatch(pattern, prefix)
    for bad in ['a"b', "a\\b", "", "x" * 65]:
        assert not re.fullmatch(pattern, bad), bad
    doc = template["Resources"]["TargetSyncEnginePolicy"]["Properties"]["PolicyDocument"]["Fn::Sub"]
    values = {"TagPrefix": prefix, "StatePrefix": "target-sync/", "MetricsNamespace": "Tether", "Bucket": "b",
              "AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}
    text = re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], doc[0])
    statement = [s for s in json.loads(text)["Statement"] if s["Sid"] == "RegisterOnTaggedTargetGroups"][0]
    assert statement["Condition"] == {"Null": {f"aws:ResourceTag/{prefix}source": "false"}}


def test_s3_only_on_the_state_bucket(rendered):
    bucket = {"Fn::If": ["CreateStateBucket", {"Ref": "StateBucket"}, {"Ref": "StateBucketName"}]}
    for role in ["TargetSyncFunctionRole", "CustomResourcesFunctionRole"]:
        for s in statements_of(rendered, role):
            if any(a.startswith("s3:") for a in as_list(s["Action"])):
                text = json.dumps(s["Resource"])
                assert "Bucket" in text and "*\"" not in text.replace("/*\"", "").replace("}*\"", ""), f"{role}: {text}"
    assert sub_variables(rendered["Resources"]["TargetSyncEnginePolicy"]["Properties"]["PolicyDocument"]) == {"Bucket": bucket}
    sync = actions(statements_of(rendered, "TargetSyncFunctionRole"))
    assert {a for a in sync if a.startswith("s3:")} == {"s3:GetObject", "s3:PutObject", "s3:ListBucket"}
    # The bucket is dedicated: plain ListBucket, so a missing key answers NoSuchKey, never AccessDenied.
    listing = [s for s in statements_of(rendered, "TargetSyncFunctionRole") if s["Action"] == "s3:ListBucket"]
    assert listing == [{"Sid": "StateListing", "Effect": "Allow", "Action": "s3:ListBucket",
                        "Resource": "arn:${AWS::Partition}:s3:::${Bucket}"}]
    custom = actions(statements_of(rendered, "CustomResourcesFunctionRole"))
    assert {a for a in custom if a.startswith("s3:")} == {
        "s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:DeleteObject", "s3:ListBucketVersions", "s3:DeleteObjectVersion"}
    assert not any(a.startswith("s3:") for a in actions(statements_of(rendered, "HealthCanaryFunctionRole")) - {"s3:GetObject"})


def test_the_canary_reads_only_the_header_secrets_it_is_given(rendered):
    """Secret probe headers: GetSecretValue, GetParameter and kms:Decrypt (through those services only) on
    exactly the listed ARNs; nothing of the kind when the lists are empty."""
    statements = statements_of(rendered, "HealthCanaryFunctionRole")
    secret_actions = {a for a in actions(statements) if a.split(":")[0] in {"secretsmanager", "ssm", "kms"}}
    assert secret_actions == {"secretsmanager:GetSecretValue", "ssm:GetParameter", "kms:Decrypt"}
    by_action = {a: s for s in statements for a in as_list(s["Action"])}
    assert by_action["secretsmanager:GetSecretValue"]["Resource"] == {"Ref": "CanaryHeaderSecretArns"}
    assert by_action["ssm:GetParameter"]["Resource"] == {"Ref": "CanaryHeaderParameterArns"}
    decrypt = by_action["kms:Decrypt"]
    assert decrypt["Resource"] == {"Ref": "CanaryHeaderKmsKeyArns"}
    assert decrypt["Condition"]["StringEquals"]["kms:ViaService"] == [
        {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}, {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"}]
    template = load()
    for condition in ["HasCanaryHeaderSecrets", "HasCanaryHeaderParameters", "HasCanaryHeaderKmsKeys"]:
        assert conditions(template, PARAMETERS)[condition]
        empty = PARAMETERS | {"CanaryHeaderSecretArns": "", "CanaryHeaderParameterArns": "", "CanaryHeaderKmsKeyArns": ""}
        assert not conditions(template, empty)[condition]
    declared = template["Parameters"]
    assert not re.fullmatch(declared["CanaryHeaderSecretArns"]["AllowedPattern"], "*")
    assert not re.fullmatch(declared["CanaryHeaderParameterArns"]["AllowedPattern"], "arn:aws:ssm:us-east-1:123456789012:*")


def test_the_canary_reads_only_its_endpoints_object():
    """CanaryTargetsS3Uri: GetObject on that one object, the URI in CANARY_TARGETS_S3_URI, no inline CANARY_TARGETS."""
    params = {"CanaryTargets": "", "CanaryTargetsS3Uri": "s3://platform-config/tether/prod/endpoints.json"}
    rendered = render(params)
    reads = [s for s in statements_of(rendered, "HealthCanaryFunctionRole") if "s3:GetObject" in as_list(s["Action"])]
    assert len(reads) == 1 and reads[0]["Action"] == "s3:GetObject"
    declared = load()["Parameters"]
    assert worst_case_text(reads[0]["Resource"], params, declared) == "arn:aws-iso-b:s3:::platform-config/tether/prod/endpoints.json"
    env = rendered["Resources"]["HealthCanaryFunction"]["Properties"]["Environment"]["Variables"]
    assert worst_case_text(env["CANARY_TARGETS_S3_URI"], params, declared) == params["CanaryTargetsS3Uri"]
    assert env["CANARY_TARGETS"] == {"Fn::If": ["HasCanaryTargetsObject", {"Ref": "AWS::NoValue"}, {"Ref": "CanaryTargets"}]}
    assert conditions(load(), params)["HasCanaryTargetsObject"]
    pattern = declared["CanaryTargetsS3Uri"]["AllowedPattern"]
    for bad in ["s3://bucket/*", "s3://bucket/", "https://bucket/key", "s3://Bucket/key"]:
        assert not re.fullmatch(pattern, bad), bad
    # With the URI empty the Select must stay in range (the transform evaluates it anyway).
    assert evaluate({"Fn::Select": [1, {"Fn::Split": ["s3://", "s3://"]}]}) == ""


def test_state_bucket_is_private_encrypted_versioned_and_emptied_on_delete(rendered):
    res = rendered["Resources"]
    props = res["StateBucket"]["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
    assert all(props["PublicAccessBlockConfiguration"].values()) and len(props["PublicAccessBlockConfiguration"]) == 4
    assert any("NoncurrentVersionExpiration" in r for r in props["LifecycleConfiguration"]["Rules"])
    deny = res["StateBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert (deny["Effect"], deny["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})
    empty = res["EmptyStateBucketOnDelete"]
    assert empty["Type"] == "Custom::EmptyBucket" and empty["Properties"]["BucketName"] == {"Ref": "StateBucket"}


def test_schedules_never_pile_up(rendered):
    res = rendered["Resources"]
    for fn in ["TargetSyncFunction", "HealthCanaryFunction"]:
        schedules = [v for v in res.values() if v["Type"] == "AWS::Scheduler::Schedule" and json.dumps(v).count(f'"{fn}"')]
        assert len(schedules) == 1, fn
        retry = schedules[0]["Properties"]["Target"]["RetryPolicy"]
        assert retry == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}
        invoke = [v for v in res.values() if v["Type"] == "AWS::Lambda::EventInvokeConfig" and v["Properties"]["FunctionName"] == {"Ref": fn}]
        assert invoke[0]["Properties"]["MaximumRetryAttempts"] == 0

def test_reserved_concurrency_is_opt_in(rendered):
    """It fails where fewer than 100 unreserved executions would remain (new accounts)."""
    assert load()["Parameters"]["ReserveConcurrency"]["Default"] == "false"
    # A canary invocation overlaps the next one (it waits for its minute): two each.
    for fn, reserved in [("TargetSyncFunction", 1), ("HealthCanaryFunction", 2), ("HealthCanaryFunction1", 2)]:
        assert rendered["Resources"][fn]["Properties"]["ReservedConcurrentExecutions"] == {
            "Fn::If": ["ReservesConcurrency", reserved, {"Ref": "AWS::NoValue"}]}
    assert "ReservedConcurrentExecutions" not in rendered["Resources"]["CustomResourcesFunction"]["Properties"]


def test_schedules_have_no_fixed_name(rendered):
    """A ScheduleV2 event is named after its logical id unless OmitName is set,
    and names are unique per account and region: a second stack would fail."""
    schedules = [v for v in rendered["Resources"].values() if v["Type"] == "AWS::Scheduler::Schedule"]
    assert len(schedules) == 4  # target-sync and one canary function per subnet
    for s in schedules:
        assert "Name" not in s["Properties"], s


def test_the_canary_is_due_every_minute_and_told_when_whatever_the_sync_schedule():
    """Due at each minute's start (cron), with the due time in its input: the
    invocation covers the next minute whole, wherever in its own it arrives."""
    res = render({"ScheduleRate": "rate(5 minutes)"})["Resources"]
    schedules = {fn: [v["Properties"] for v in res.values()
                      if v["Type"] == "AWS::Scheduler::Schedule" and json.dumps(v).count(f'"{fn}"')][0]
                 for fn in ["TargetSyncFunction", "HealthCanaryFunction", "HealthCanaryFunction2"]}
    assert schedules["TargetSyncFunction"]["ScheduleExpression"] == {"Ref": "ScheduleRate"}
    for fn in ["HealthCanaryFunction", "HealthCanaryFunction2"]:
        assert schedules[fn]["ScheduleExpression"] == "cron(* * * * ? *)"
        assert json.loads(schedules[fn]["Target"]["Input"]) == {"scheduled_time": "<aws.scheduler.scheduled-time>"}


def test_one_failed_probe_never_fails_a_region_over():
    """Defaults: with 6 probes a minute, one failure is a ratio of 5/6, never
    below SuccessThreshold. The timing and rates of the whole chain are the
    model's (shared/src/canary/failover.rs, checked against these defaults
    in test_failover.py)."""
    declared = load()["Parameters"]
    probes = int(declared["ProbesPerInvocation"]["Default"])
    threshold = float(declared["SuccessThreshold"]["Default"])
    assert (probes - 1) / probes >= threshold
    # Every allowed probes x interval fits the minute, and the timeout covers
    # the wait for the minute (up to 60 s), the minute and the response margin.
    longest = declared["ProbesPerInvocation"]["MaxValue"] * declared["ProbeIntervalMs"]["MaxValue"] / 1000
    assert longest <= 60
    assert load()["Resources"]["HealthCanaryFunction"]["Properties"]["Timeout"] >= 60 + 60 + 3


def test_custom_resources_carry_a_service_timeout_shorter_than_the_function(rendered):
    """ServiceTimeout (1 to 3600 s, default 3600) bounds how long CloudFormation
    waits for an answer that never comes."""
    res = rendered["Resources"]
    timeout = res["CustomResourcesFunction"]["Properties"]["Timeout"]
    custom = {k: v for k, v in res.items() if v["Type"].startswith("Custom::") or v["Type"] == "AWS::CloudFormation::CustomResource"}
    assert set(custom) == {"FirstSync", "EmptyStateBucketOnDelete", "ExampleVpcEndpointAddresses"}
    for name, resource in custom.items():
        service_timeout = int(resource["Properties"]["ServiceTimeout"])
        assert 1 <= service_timeout < timeout, name


def test_health_check_names_contain_the_region(rendered):
    """Route 53 health checks are global: both halves of a failover pair list side by side."""
    checks = [v for v in rendered["Resources"].values() if v["Type"] == "AWS::Route53::HealthCheck"]
    assert checks
    for check in checks:
        name = [tag["Value"] for tag in check["Properties"]["HealthCheckTags"] if tag["Key"] == "Name"][0]
        assert "${AWS::Region}" in name["Fn::Sub"], name


def test_alarm_actions_reach_a_topic_in_the_alarms_region(rendered):
    """CloudWatch alarm actions must use an SNS topic in the alarm's own region:
    a topic name becomes an ARN in this stack's region."""
    topic = {"Fn::If": ["HasAlarmTopic", [{"Fn::If": ["AlarmTopicIsArn", {"Ref": "AlarmTopic"}, {
        "Fn::Sub": "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:${AlarmTopic}"}]}], {"Ref": "AWS::NoValue"}]}
    alarms = [v["Properties"] for v in rendered["Resources"].values() if v["Type"] == "AWS::CloudWatch::Alarm"]
    for alarm in alarms:
        for key in ("AlarmActions", "OKActions"):
            if key in alarm:
                assert alarm[key] == topic, alarm
    template = load()
    for value, is_arn in [("ops", False), ("arn:aws:sns:us-west-2:123456789012:ops", True), ("", False)]:
        assert conditions(template, {"AlarmTopic": value})["AlarmTopicIsArn"] is is_arn


def test_functions_log_json_to_groups_with_retention(rendered):
    res = rendered["Resources"]
    for fn in FUNCTIONS:
        logging = res[fn]["Properties"]["LoggingConfig"]
        assert logging["LogFormat"] == "JSON"
        group = res[logging["LogGroup"]["Ref"]]
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_one_first_sync_with_the_functions_environment(rendered):
    """Custom::TargetSync runs the engine once over everything the function
    would sync, with the custom-resources function's own environment: with
    target-sync on, it holds target-sync's variables, variable for variable.
    The event carries no configuration, and the service token is not
    exported (a caller must not choose what is registered)."""
    res = rendered["Resources"]
    syncs = {k: v for k, v in res.items() if v["Type"] == "Custom::TargetSync"}
    assert list(syncs) == ["FirstSync"]
    sync = syncs["FirstSync"]
    assert set(sync["Properties"]) == {"ServiceToken", "ServiceTimeout"}
    env = res["TargetSyncFunction"]["Properties"]["Environment"]["Variables"]
    assert env["TAG_DISCOVERY"] == "true" and env["TAG_PREFIX"] == {"Ref": "TagPrefix"}
    assert "TARGETS" not in env
    cond, with_sync, without = res["CustomResourcesFunction"]["Properties"]["Environment"]["Variables"]["Fn::If"]
    assert cond == "HasTargetSync"
    assert without == {"DNS_SERVERS": {"Ref": "DnsServers"}}
    # The bucket is named directly: EmptyStateBucketOnDelete is served by
    # the custom-resources function, and returns the same name.
    bucket = {"Fn::GetAtt": ["EmptyStateBucketOnDelete", "BucketName"]}
    assert env["STATE_BUCKET"]["Fn::If"][1] == bucket
    assert res["EmptyStateBucketOnDelete"]["Properties"]["BucketName"] == {"Ref": "StateBucket"}
    same = dict(env, STATE_BUCKET={"Fn::If": [env["STATE_BUCKET"]["Fn::If"][0], {"Ref": "StateBucket"},
                                               env["STATE_BUCKET"]["Fn::If"][2]]})
    assert with_sync == same
    # Created after the engine's policy; deleted before the bucket is emptied.
    assert sync["DependsOn"] == "TargetSyncEnginePolicy" or "TargetSyncEnginePolicy" in sync["DependsOn"]
    assert all("Export" not in o for o in rendered["Outputs"].values())


def test_per_run_alarms_watch_what_target_sync_publishes(rendered):
    res = rendered["Resources"]
    alarms = {k: v["Properties"] for k, v in res.items()
              if v["Type"] == "AWS::CloudWatch::Alarm" and v["Properties"].get("Namespace") == {"Ref": "MetricsNamespace"}
              and v["Properties"]["MetricName"] not in ("RegionUnhealthy", "SoonestCertificateExpiryDays", "DegradedEndpoints")}
    assert {a["MetricName"] for a in alarms.values()} == {"FailedMappings", "SaturatedMappings", "HeldBackTargets",
                                                         "DeferredGroups"}
    assert {a["MetricName"] for a in alarms.values()} <= PER_RUN_METRICS
    for name, alarm in alarms.items():
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "TargetSyncFunction"}}], name
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold"), name
        assert res[name]["Condition"] == "HasSyncMetrics"
    assert "alb:" in alarms["SaturatedMappingsAlarm"]["AlarmDescription"]
    assert not [v for v in res.values() if v["Type"] == "AWS::CloudWatch::Alarm" and v["Properties"].get("MetricName") == "HeldBack"]


def test_target_sync_off_creates_none_of_its_parts():
    res = render({"EnableTargetSync": "false"})["Resources"]
    template = load()
    for name, resource in template["Resources"].items():
        if isinstance(resource, dict) and resource.get("Condition") in ("HasTargetSync", "HasSyncMetrics", "CreateStateBucket"):
            assert name not in res or "Condition" in res[name], name
    conditions = render({"EnableTargetSync": "false"})["Conditions"]
    assert conditions["CreateStateBucket"]["Fn::And"][0] == {"Condition": "HasTargetSync"}


def test_every_select_is_in_range_with_the_default_parameters():
    """A deploy with the defaults (no canary, no subnets): every Fn::Select
    with literal arguments stays in range."""
    defaults = render({"CanaryTargets": "", "SubnetIds": "",
                       "SecurityGroupIds": "", "HostedZoneId": "", "ExampleVpcEndpointDnsName": "", "ExampleVpcId": ""})
    found = list(selects(defaults["Resources"]))
    assert found, "the template has no Fn::Select to check"
    for node in found:
        evaluate(node)


def test_list_parameters_check_every_item():
    """AllowedPattern applies to each item of a CommaDelimitedList; the
    header ARNs take no wildcard (IAM would read one as a pattern)."""
    declared = load()["Parameters"]
    cases = {
        "SubnetIds": (["subnet-0123456789abcdef0", "subnet-01234567", ""], ["subnet-XYZ", "sg-01234567", " subnet-01234567"]),
        "SecurityGroupIds": (["sg-0123456789abcdef0", ""], ["subnet-01234567", "sg-"]),
        "CanaryHeaderSecretArns": (["arn:aws:secretsmanager:us-east-1:123456789012:secret:tether/key-AbCdEf", ""],
                                   ["arn:aws:secretsmanager:us-east-1:123456789012:secret:*",
                                    "arn:aws:secretsmanager:us-east-1:123456789012:secret:tether/key-??????",
                                    "arn:aws:secretsmanager:us-east-1:123456789012:secret:tether/key"]),
        "CanaryHeaderParameterArns": (["arn:aws:ssm:us-east-1:123456789012:parameter/tether/token"],
                                      ["arn:aws:ssm:us-east-1:123456789012:parameter/tether/*"]),
    }
    for name, (good, bad) in cases.items():
        assert declared[name]["Type"] == "CommaDelimitedList"
        pattern = declared[name]["AllowedPattern"]
        for item in good:
            assert re.fullmatch(pattern, item), (name, item)
        for item in bad:
            assert not re.fullmatch(pattern, item), (name, item)


def test_rules_refuse_empty_items_and_parts_that_only_work_together():
    """An empty item (a trailing comma) passes the per-item pattern of an
    empty list, so Rules refuse it unless the whole list is empty."""
    rules = json.dumps(load()["Rules"])
    for needle in ['{"Fn::Contains": [{"Ref": "SubnetIds"}, ""]}', '{"Fn::Contains": [{"Ref": "SecurityGroupIds"}, ""]}',
                   '{"Fn::EachMemberEquals": [{"Ref": "SubnetIds"}, ""]}']:
        assert needle in rules, needle
    names = set(load()["Rules"])
    assert {"CanaryTargetsFromOnePlace", "CanaryRunsInTheVpc", "SubnetsWithSecurityGroups",
            "FailoverRecordNeedsItsParts", "ExampleNeedsItsVpc"} <= names


def test_log_level_cannot_print_raw_events():
    """At TRACE lambda_runtime logs the raw event, whose ResponseURL is a pre-signed credential."""
    levels = load()["Parameters"]["LogLevel"]["AllowedValues"]
    assert "TRACE" not in levels and "DEBUG" in levels


# Types that take tags, and the property that holds them.
TAGGED = {"AWS::Lambda::Function": "Tags", "AWS::IAM::Role": "Tags", "AWS::Logs::LogGroup": "Tags", "AWS::S3::Bucket": "Tags",
          "AWS::CloudWatch::Alarm": "Tags", "AWS::Route53::HealthCheck": "HealthCheckTags",
          "AWS::ElasticLoadBalancingV2::TargetGroup": "Tags"}


def test_every_resource_that_takes_tags_carries_the_environment_tag(rendered):
    for name, res in rendered["Resources"].items():
        # SAM gives the roles it makes for the schedules no tags; stack tags reach them.
        if res["Type"] in TAGGED and not name.endswith("ScheduleRole"):
            tags = res["Properties"].get(TAGGED[res["Type"]], [])
            assert {"Key": "environment", "Value": {"Ref": "EnvironmentName"}} in tags, name


def test_every_role_takes_the_permissions_boundary(rendered):
    roles = [v for v in rendered["Resources"].values() if v["Type"] == "AWS::IAM::Role"]
    assert len(roles) == 7  # target-sync, custom-resources, the canary's; one per schedule (four)
    for role in roles:
        assert role["Properties"]["PermissionsBoundary"] == {
            "Fn::If": ["HasPermissionsBoundary", {"Ref": "PermissionsBoundaryArn"}, {"Ref": "AWS::NoValue"}]}


def test_with_every_optional_part_off_only_what_is_needed_is_created():
    template = render({k: "" for k in ["CanaryTargets", "SubnetIds", "SecurityGroupIds", "HostedZoneId",
                                        "RecordName", "RecordTarget", "ExampleVpcEndpointDnsName", "ExampleVpcId", "AlarmTopic",
                                        "PermissionsBoundaryArn"]} | {"ReserveConcurrency": "false"})
    defaults = {k: v.get("Default", "") for k, v in load()["Parameters"].items()}
    made = created(template, defaults)
    assert not {k for k in made if "Canary" in k or "Endpoint" in k or "Failover" in k or "Example" in k}, made
    assert {"TargetSyncFunction", "FirstSync", "StateBucket", "CustomResourcesFunction", "Dashboard"} <= made
    made_off = created(template, defaults | {"EnableTargetSync": "false"})
    assert not {k for k in made_off if "TargetSync" in k or "State" in k or "CustomResources" in k or "Mappings" in k}, made_off
    with_canary = created(template, defaults | {"EnableTargetSync": "false", "CanaryTargetsS3Uri": "s3://b0/k"})
    assert "CustomResourcesFunction" not in with_canary and "HealthCanaryFunction" in with_canary


def test_samconfig_environments_name_only_template_parameters():
    import shlex
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    declared = load()["Parameters"]
    for env, commands in config.items():
        if not isinstance(commands, dict):
            continue
        # The template needs no AWS::LanguageExtensions any more.
        assert "language_extensions" not in commands["global"]["parameters"], env
        deploy = commands.get("deploy", {}).get("parameters", {})
        for item in shlex.split(deploy.get("parameter_overrides", "")):
            name, value = item.split("=", 1)
            assert name in declared, (env, name)
            if "AllowedValues" in declared[name]:
                assert value in declared[name]["AllowedValues"], (env, item)
        assert "project=" in deploy.get("tags", ""), env


def test_the_environments_a_full_deployment_starts_the_binaries_with():
    """`python tests/template/render.py environments` gives these to the Rust
    tests (template-binary contract); the names are the contract's."""
    from render import ATTRIBUTES
    from evaluate import environments

    envs = environments(render(), PARAMETERS, ATTRIBUTES)
    assert set(envs["TargetSyncFunction"]) == {"TAG_DISCOVERY", "TAG_PREFIX", "STATE_BUCKET", "STATE_PREFIX", "DNS_SERVERS",
                                               "METRICS_NAMESPACE", "CW_METRIC_FLAG_IP_COUNT", "MAPPING_METRICS",
                                               "DESCRIBE_SHARE", "DESCRIBE_EVERY", "SCHEDULE", "SOURCE_ROLE_ARNS",
                                               "SOURCE_ROLE_EXTERNAL_ID"}
    assert envs["TargetSyncFunction"]["TAG_PREFIX"] == "tether:" and envs["TargetSyncFunction"]["TAG_DISCOVERY"] == "true"
    # The first sync (custom-resources) starts with target-sync's configuration.
    assert envs["CustomResourcesFunction"] == envs["TargetSyncFunction"]
    assert set(envs["HealthCanaryFunction"]) == {"CANARY_TARGETS", "PROBES_PER_INVOCATION", "PROBE_INTERVAL_MS",
                                                 "SUCCESS_THRESHOLD", "FAILBACK_MINUTES", "DNS_SERVERS", "METRICS_NAMESPACE",
                                                 "STACK_NAME", "FAILOVER_RECORD_NAME"}
    from_s3 = {**PARAMETERS, "CanaryTargets": "", "CanaryTargetsS3Uri": "s3://b0/endpoints.json"}
    canary = environments(render(from_s3), from_s3, ATTRIBUTES)["HealthCanaryFunction"]
    assert canary["CANARY_TARGETS_S3_URI"] == "s3://b0/endpoints.json" and "CANARY_TARGETS" not in canary


@pytest.mark.parametrize("sync", ["true", "false"])
def test_dashboard_is_json_and_shows_target_sync_by_fleet_totals_and_its_log(sync):
    template = render()
    params = {k: v.get("Default", "") for k, v in load()["Parameters"].items()} | {
        "EnableTargetSync": sync, "CanaryTargetsS3Uri": "s3://b0/k"}
    held = conditions(template, params)
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    widgets = json.loads(value_of(body, params, template, held, {}))["widgets"]
    searches = [m[0]["expression"] for w in widgets if w["type"] == "metric" for m in w["properties"]["metrics"]]
    canary = {"Success", "Latency", "CertificateExpiryDays", "DegradedEndpoints", "RegionUnhealthy", "UnhealthyEndpoints"}
    sync_searches = [e for e in searches if not set(re.findall(r'MetricName=\\?"(\w+)', e)) <= canary]
    assert sync_searches, searches
    for expression in sync_searches:
        # Per-group metrics are opt-in: the dashboard must not depend on them.
        assert "FunctionName}" in expression and "TargetGroup" not in expression, expression
        assert set(re.findall(r'MetricName=\\?"(\w+)', expression)) <= PER_RUN_METRICS, expression
    logs = [w for w in widgets if w["type"] == "log"]
    if sync == "true":
        (log,) = logs
        assert '`fields.message` = "target group failed"' in log["properties"]["query"]
    else:
        assert logs == []


def test_every_skipped_checkov_check_says_why():
    """A skip is only acceptable with a reason a reader can check
    (`python tests/template/checkov_skips.py` lists them)."""
    from checkov_skips import TEMPLATES, skips

    found = [s for path in TEMPLATES for s in skips(path)]
    assert found, "no checkov skips found: is the Metadata.checkov.skip layout still read?"
    for name, check, reason in found:
        assert check.startswith("CKV_"), (name, check)
        assert len(reason.split()) >= 5, (name, check, reason)


def test_discovery_is_the_tagging_api_not_describe_tags(rendered):
    """GetResources filtered on the tag key lists only the opted-in groups;
    DescribeTags over every group is gone (and so is its permission)."""
    for role in ["TargetSyncFunctionRole", "CustomResourcesFunctionRole"]:
        granted = actions(statements_of(rendered, role))
        assert "tag:GetResources" in granted, role
        assert "elasticloadbalancing:DescribeTags" not in granted, role


def test_source_roles_are_assumed_only_as_listed():
    """sts:AssumeRole appears once, on SourceRoleArns exactly, and only when
    the user lists roles."""
    assert "TargetSyncSourceRolesPolicy" not in created(load(), PARAMETERS)
    roles = "arn:aws:iam::222222222222:role/tether-source,arn:aws:iam::*:role/hub/*"
    assert "TargetSyncSourceRolesPolicy" in created(load(), {**PARAMETERS, "SourceRoleArns": roles})
    assert load()["Resources"]["TargetSyncSourceRolesPolicy"]["Condition"] == "HasSourceRoles"
    res = render({"SourceRoleArns": roles})["Resources"]
    policy = res["TargetSyncSourceRolesPolicy"]["Properties"]
    assert policy["Roles"] == [{"Ref": "TargetSyncFunctionRole"}, {"Ref": "CustomResourcesFunctionRole"}]
    assert policy["PolicyDocument"]["Statement"] == [
        {"Sid": "AssumeSourceRoles", "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": {"Ref": "SourceRoleArns"}}]
    for name, r in res.items():
        if r["Type"] == "AWS::IAM::ManagedPolicy" and name != "TargetSyncSourceRolesPolicy":
            assert "sts:AssumeRole" not in json.dumps(r["Properties"]["PolicyDocument"]), name
    pattern = load()["Parameters"]["SourceRoleArns"]["AllowedPattern"]
    for good in roles.split(","):
        assert re.fullmatch(pattern, good), good
    for bad in ["*", "arn:aws:iam::*:*", "arn:aws:s3:::bucket", 'arn:aws:iam::1:role/"x']:
        assert not re.fullmatch(pattern, bad), bad


def test_the_function_knows_its_schedule_and_its_share_of_elb(rendered):
    env = rendered["Resources"]["TargetSyncFunction"]["Properties"]["Environment"]["Variables"]
    assert env["SCHEDULE"] == {"Ref": "ScheduleRate"}
    assert env["DESCRIBE_SHARE"] == {"Ref": "DescribeShare"}
    assert env["DESCRIBE_EVERY"] == {"Ref": "DescribeEvery"}
    assert env["SOURCE_ROLE_ARNS"] == {"Fn::Join": [",", {"Ref": "SourceRoleArns"}]}
    share = load()["Parameters"]["DescribeShare"]
    # A quarter of ELB's Describe rate always stays with the account's other users.
    assert (share["MinValue"], share["MaxValue"], share["Default"]) == (1, 75, 50)
