"""The SAM template, rendered as CloudFormation would deploy it: least
privilege per function, schedules, the state bucket, and agreement between
the template's functions and the Cargo workspace.

A change that widens a policy, adds a function the workspace cannot build,
or loosens the bucket makes one of these fail."""

import json
import subprocess

import pytest

from render import ALB, ROOT, TG_443, TG_80, load, render

BASIC = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
VPC = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
FUNCTIONS = {"TargetSyncFunction": "target-sync", "HealthCanaryFunction": "health-canary", "CustomResourcesFunction": "custom-resources"}
# The only actions AWS offers no resource-level permission for, and so may be on "*".
STAR_OK = {"elasticloadbalancing:DescribeTargetHealth", "cloudwatch:PutMetricData"}


@pytest.fixture(scope="module")
def rendered():
    return render()


def as_list(x):
    return x if isinstance(x, list) else [x]


def statements_of(rendered, role):
    """Every Allow statement that reaches `role`: its inline policies and the managed policies attached to it."""
    resources = rendered["Resources"]
    out = []
    for policy in resources[role]["Properties"].get("Policies", []):
        out += as_list(policy["PolicyDocument"]["Statement"])
    for res in resources.values():
        if res["Type"] == "AWS::IAM::ManagedPolicy" and {"Ref": role} in res["Properties"]["Roles"]:
            out += as_list(res["Properties"]["PolicyDocument"]["Statement"])
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
    assert {k: v["Metadata"]["BuildProperties"]["Binary"] for k, v in functions.items()} == FUNCTIONS
    assert all(v["Metadata"]["BuildMethod"] == "rust-cargolambda" for v in functions.values())
    assert set(FUNCTIONS.values()) == binaries


def test_no_broad_managed_policies(rendered):
    for name, res in rendered["Resources"].items():
        if res["Type"] == "AWS::IAM::Role":
            arns = set(res["Properties"].get("ManagedPolicyArns", []))
            assert arns <= {BASIC, VPC}, f"{name}: {arns}"


def test_only_actions_without_resource_level_permissions_are_on_star(rendered):
    for role in [r for r, v in rendered["Resources"].items() if v["Type"] == "AWS::IAM::Role"]:
        for s in statements_of(rendered, role):
            for a in as_list(s["Action"]):
                assert a != "*" and not a.endswith(":*"), f"{role}: wildcard action {a}"
            if "*" in as_list(s["Resource"]):
                assert actions([s]) <= STAR_OK, f"{role}: {actions([s])} on *"


def test_metrics_only_into_the_namespace(rendered):
    for role in ["TargetSyncFunctionRole", "HealthCanaryFunctionRole"]:
        metric = [s for s in statements_of(rendered, role) if "cloudwatch:PutMetricData" in as_list(s["Action"])]
        assert metric, role
        for s in metric:
            assert s["Condition"] == {"StringEquals": {"cloudwatch:namespace": {"Ref": "MetricsNamespace"}}}, role


def test_register_and_deregister_only_on_the_configured_target_groups(rendered):
    for role in ["TargetSyncFunctionRole", "CustomResourcesFunctionRole"]:
        elb = [s for s in statements_of(rendered, role) if actions([s]) & {"elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"}]
        resources = [r for s in elb for r in as_list(s["Resource"])]
        # Each statement names one mapping's ARN, through Fn::Select over the mapping entry.
        assert {evaluate(r) for r in resources} == {TG_80, TG_443}, role
    assert not actions(statements_of(rendered, "HealthCanaryFunctionRole")) & {"elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"}


def test_s3_only_on_the_state_bucket(rendered):
    for role in ["TargetSyncFunctionRole", "CustomResourcesFunctionRole", "HealthCanaryFunctionRole"]:
        for s in statements_of(rendered, role):
            if any(a.startswith("s3:") for a in as_list(s["Action"])):
                text = json.dumps(s["Resource"])
                assert "StateBucket" in text and "*\"" not in text.replace("/*\"", "").replace("}*\"", ""), f"{role}: {text}"
    sync = actions(statements_of(rendered, "TargetSyncFunctionRole"))
    assert {a for a in sync if a.startswith("s3:")} == {"s3:GetObject", "s3:PutObject", "s3:ListBucket"}
    listing = [s for s in statements_of(rendered, "TargetSyncFunctionRole") if s["Action"] == "s3:ListBucket"]
    assert listing[0]["Condition"] == {"StringLike": {"s3:prefix": {"Fn::Sub": "${StatePrefix}*"}}}
    assert "cloudwatch:PutMetricData" not in actions(statements_of(rendered, "CustomResourcesFunctionRole"))
    assert not any(a.startswith("s3:") for a in actions(statements_of(rendered, "HealthCanaryFunctionRole")))


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
    assert res["TargetSyncFunction"]["Properties"]["ReservedConcurrentExecutions"] == 1


def test_functions_log_json_to_groups_with_retention(rendered):
    res = rendered["Resources"]
    for fn in FUNCTIONS:
        logging = res[fn]["Properties"]["LoggingConfig"]
        assert logging["LogFormat"] == "JSON"
        group = res[logging["LogGroup"]["Ref"]]
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_each_mapping_and_endpoint_gets_its_resources(rendered):
    res = rendered["Resources"]
    syncs = [v for v in res.values() if v["Type"] == "Custom::TargetSync"]
    entries = {f"{ALB}|{TG_80}|80", f"{ALB}|{TG_443}|443"}
    assert {evaluate(v["Properties"]["TargetGroupArn"]) for v in syncs} == {TG_80, TG_443}
    assert {"|".join(evaluate(v["Properties"][k]) for k in ("DnsName", "TargetGroupArn", "Port")) for v in syncs} == entries
    held_back = [v for v in res.values() if v["Type"] == "AWS::CloudWatch::Alarm" and v["Properties"]["MetricName"] == "HeldBack"]
    assert {evaluate(v["Properties"]["Dimensions"][0]["Value"]) for v in held_back} == {
        "targetgroup/orders-80/0123456789abcdef", "targetgroup/orders-443/fedcba9876543210"}
    for sync in syncs:
        # Ordered after its own policy, and deleted before the bucket is emptied.
        policy = res[sync["Properties"]["After"]["Ref"]]
        assert policy["Type"] == "AWS::IAM::ManagedPolicy"
        assert policy["Properties"]["PolicyDocument"]["Statement"][0]["Resource"] == sync["Properties"]["TargetGroupArn"]
        assert sync["Properties"]["StateBucket"]["Fn::If"][1] == {"Fn::GetAtt": ["EmptyStateBucketOnDelete", "BucketName"]}
    checks = {k: v for k, v in res.items() if v["Type"] == "AWS::Route53::HealthCheck"}
    assert set(checks) == {"EndpointHealthCheckorders", "EndpointHealthCheckbilling", "FailoverHealthCheck"}
    for check in checks.values():
        config = check["Properties"]["HealthCheckConfig"]
        assert config["Type"] == "CLOUDWATCH_METRIC" and config["InsufficientDataHealthStatus"] == "Unhealthy"
    alarm = res["EndpointAlarmorders"]["Properties"]
    assert (alarm["MetricName"], alarm["Statistic"], alarm["Period"], alarm["TreatMissingData"]) == ("Success", "Average", 60, "breaching")
    assert alarm["Dimensions"] == [{"Name": "Endpoint", "Value": "orders"}]


def test_every_select_is_in_range_with_the_default_parameters():
    """A deploy with the defaults (no mappings, no canary endpoints): Fn::ForEach
    runs once over "", and the transform evaluates every Fn::Select even of
    resources whose condition is false."""
    defaults = render({"Mappings": "", "CanaryTargets": "", "CanaryEndpoints": "", "SubnetIds": "",
                       "SecurityGroupIds": "", "HostedZoneId": "", "ExampleVpcEndpointDnsName": "", "ExampleVpcId": ""})
    found = list(selects(defaults["Resources"]))
    assert found, "the template has no Fn::Select to check"
    for node in found:
        evaluate(node)


def test_canary_endpoints_with_any_characters_and_a_check_against_the_targets(rendered):
    res = render({"CanaryEndpoints": "orders-api,billing.v2"})["Resources"]
    assert {"EndpointAlarmordersapi", "EndpointHealthCheckbillingv2"} <= set(res)
    assert res["EndpointHealthCheckordersapi"]["Properties"]["HealthCheckConfig"]["AlarmIdentifier"]["Name"] == {"Ref": "EndpointAlarmordersapi"}
    env = rendered["Resources"]["HealthCanaryFunction"]["Properties"]["Environment"]["Variables"]
    assert env["CANARY_ENDPOINTS"] == {"Fn::Join": [",", {"Ref": "CanaryEndpoints"}]}
