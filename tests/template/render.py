"""Renders template.yaml the way CloudFormation deploys it, without an AWS
account: the SAM transform (aws-sam-translator), the template's only one."""

import copy
import functools
import os
from pathlib import Path

from samcli.yamlhelper import yaml_parse
from samtranslator.translator.transform import transform

ROOT = Path(__file__).resolve().parents[2]

# Every optional part switched on.
PARAMETERS = {
    "EnableTargetSync": "true",
    "TagPrefix": "tether:",
    "CanaryTargets": '[{"name":"orders","url":"https://orders.us-east-1.example.com/health"},'
    '{"name":"billing","url":"https://billing.example.com/health"}]',
    "CanaryHeaderSecretArns": "arn:aws:secretsmanager:us-east-1:123456789012:secret:tether/canary-api-key-AbCdEf",
    "CanaryHeaderParameterArns": "arn:aws:ssm:us-east-1:123456789012:parameter/tether/canary/token",
    "CanaryHeaderKmsKeyArns": "arn:aws:kms:us-east-1:123456789012:key/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
    "SubnetIds": "subnet-0123456789abcdef0,subnet-0123456789abcdef1,subnet-0123456789abcdef2",
    "SecurityGroupIds": "sg-0123456789abcdef0",
    "HostedZoneId": "Z0123456789ABCDEFGHIJ",
    "RecordName": "api.example.com",
    "RecordTarget": "vpce-0123.execute-api.us-east-1.vpce.amazonaws.com",
    "ExampleVpcEndpointDnsName": "vpce-0123.execute-api.us-east-1.vpce.amazonaws.com",
    "ExampleVpcId": "vpc-0123456789abcdef0",
    "AlarmTopic": "arn:aws:sns:us-east-1:123456789012:ops",
    "MetricsNamespace": "Tether",
    "ReserveConcurrency": "true",
    "EnvironmentName": "production",
    "PermissionsBoundaryArn": "arn:aws:iam::123456789012:policy/platform-boundary",
}
REGION = "us-east-1"


def load() -> dict:
    """template.yaml, parsed (a fresh copy each time; parsed once per content)."""
    return copy.deepcopy(_parse((ROOT / "template.yaml").read_text()))


@functools.cache
def _parse(text: str) -> dict:
    return yaml_parse(text)


def render(parameters: dict | None = None) -> dict:
    """The transformed template, as CloudFormation would deploy it."""
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    params = {**PARAMETERS, **(parameters or {})}
    template = load()
    # As after `sam package`: the code is in S3.
    template["Globals"]["Function"]["CodeUri"] = "s3://artifacts/tether.zip"
    return transform(template, params, _NoManagedPolicies())


def release_module():
    """scripts/release.py, which `make release` runs."""
    import sys

    scripts = str(ROOT / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    import release

    return release


def render_release(parameters: dict | None = None) -> dict:
    """The release template (dist/tether-<version>/template.json): no
    transform, code in S3 at parameterised locations. `parameters` reach the
    SAM translator only (see scripts/release_template.py). A fresh copy each
    time (rendered once per parameters, region and template.yaml)."""
    import json

    key = (json.dumps(parameters, sort_keys=True), os.environ.get("AWS_REGION"), (ROOT / "template.yaml").read_text())
    return json.loads(_render_release(key))


@functools.cache
def _render_release(key: tuple) -> str:
    import json

    release = release_module()
    return json.dumps(release.release_template.render(load(), release.version(), json.loads(key[0])))


def pinned_parameters(release: dict) -> dict:
    """Parameters a release template fixes to one value (name to allowed values)."""
    return {
        k: v["AllowedValues"]
        for k, v in release["Parameters"].items()
        if v.get("Description", "").startswith("Fixed in this release")
    }


def release_parameters(release: dict, params: dict) -> dict:
    """`params` as a release template takes them: pinned ones at their one
    value, ones it does not have left out."""
    out = {k: v for k, v in params.items() if k in release["Parameters"]}
    out.update({k: ",".join(v) for k, v in pinned_parameters(release).items()})
    return out


class _NoManagedPolicies:
    """The template names no managed policy by name; SAM's own defaults need no lookup."""

    def load(self):
        return {}


# What Fn::GetAtt and Ref of a resource give, for a full deployment.
ATTRIBUTES = {
    ("EmptyStateBucketOnDelete", "BucketName"): "tether-statebucket-0123456789ab",
    ("StateBucket", "Ref"): "tether-statebucket-0123456789ab",
    ("TargetSyncFunction", "Ref"): "tether-TargetSyncFunction-0123456789ab",
    ("HealthCanaryFunction", "Ref"): "tether-HealthCanaryFunction-0123456789ab",
    ("HealthCanaryFunction1", "Ref"): "tether-HealthCanaryFunction1-0123456789ab",
    ("HealthCanaryFunction2", "Ref"): "tether-HealthCanaryFunction2-0123456789ab",
}


def alarms(rendered: dict, params: dict, attributes: dict) -> list:
    """Every created alarm on a metric tether publishes (not AWS/...): its
    namespace, metric name and dimensions, as CloudWatch would match them."""
    from evaluate import conditions, value_of

    held = conditions(rendered, params)
    out = []
    for name, res in sorted(rendered["Resources"].items()):
        if res["Type"] != "AWS::CloudWatch::Alarm" or ("Condition" in res and not held[res["Condition"]]):
            continue
        props = res["Properties"]
        if "Namespace" not in props:  # metric math, over AWS/Lambda
            continue
        namespace = value_of(props["Namespace"], params, rendered, held, attributes)
        if namespace.startswith("AWS/"):
            continue
        dims = {d["Name"]: value_of(d["Value"], params, rendered, held, attributes) for d in props.get("Dimensions", [])}
        out.append({"Alarm": name, "Namespace": namespace, "MetricName": props["MetricName"], "Dimensions": dims})
    return out


def main(argv: list[str]) -> int:
    """`python render.py environments|alarms [Name=Value ...]`: each function's
    environment, or each alarm on tether's own metrics, as the rendered
    template gives it for a full deployment (the parameters above, overridden
    by the arguments), as JSON. The Rust tests start each built binary with
    those environments and check that the metrics it publishes are the ones
    the alarms watch (template-binary contract)."""
    import json

    from evaluate import environments

    if not argv or argv[0] not in ("environments", "alarms"):
        print(main.__doc__)
        return 2
    params = {**PARAMETERS, **dict(a.split("=", 1) for a in argv[1:])}
    what = environments if argv[0] == "environments" else alarms
    print(json.dumps(what(render(params), params, ATTRIBUTES), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
