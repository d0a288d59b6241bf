"""Quotas a real account imposes on the rendered template, with every part on
and many endpoints (which add no resource: they are in the canary's
configuration, the metrics and the dashboard's searches). Each test names the
quota it guards; a change that would pass every linter but fail a deploy makes
one of these fail.

Each runs on both templates that deploy: template.yaml through its
transforms, and the release's template.json (parameterised; evaluated with
the same values, those it pins at their one value)."""

import json

import pytest

from evaluate import variable_maps, worst_case_text
from render import PARAMETERS, ROOT, load, release_parameters, render, render_release

FLEET = {
    **PARAMETERS,
    "CanaryTargets": "",
    "CanaryTargetsS3Uri": "s3://platform-configuration-bucket/tether/production/canary-endpoints.json",
    "DnsServers": "10.0.0.2:53,10.1.0.2:53,[fd00:ec2::253]:53",
    "StateBucketName": "b" * 63,
    "StatePrefix": "target-sync/" + "p" * 50 + "/",
    "TagPrefix": "t" * 64,
}


class Deployed:
    """A template as deployed, the parameter values it is evaluated with, and its declared parameters."""

    def __init__(self, template: dict, params: dict, declared: dict):
        self.template, self.params, self.declared = template, params, declared

    def __getitem__(self, key):
        return self.template[key]


@pytest.fixture(scope="module", params=["source", "release"])
def fleet(request):
    if request.param == "source":
        return Deployed(render(FLEET), FLEET, load()["Parameters"])
    release = render_release()
    return Deployed(release, release_parameters(release, FLEET), release["Parameters"])


def test_quota_iam_managed_policies_per_role_at_most_10(fleet):
    """IAM: 10 managed policies attached to a role (default quota)."""
    res = fleet["Resources"]
    for name, role in res.items():
        if role["Type"] != "AWS::IAM::Role":
            continue
        arns = role["Properties"].get("ManagedPolicyArns", [])
        attached = [k for k, v in res.items()
                    if v["Type"] == "AWS::IAM::ManagedPolicy" and {"Ref": name} in v["Properties"].get("Roles", [])]
        assert len(arns) + len(attached) <= 10, (name, arns, attached)


def test_quota_lambda_environment_at_most_4_kb(fleet):
    """Lambda: 4 KB for all of a function's environment variables (keys and values)."""
    for name, res in fleet["Resources"].items():
        if res["Type"] != "AWS::Lambda::Function":
            continue
        for variables in variable_maps(res["Properties"].get("Environment", {}).get("Variables", {})):
            size = 0
            for key, value in variables.items():
                text = worst_case_text(value, fleet.params, fleet.declared)
                if text is not None:
                    size += len(key.encode()) + len(text.encode())
            assert size <= 4096, (name, size)


def test_quota_cloudformation_parameter_value_at_most_4096_bytes(fleet):
    """CloudFormation: 4096 bytes per parameter value; every default fits, and so do the fleet's values."""
    for name, parameter in fleet.declared.items():
        assert len(str(parameter.get("Default", "")).encode()) <= 4096, name
    for name, value in fleet.params.items():
        assert len(value.encode()) <= 4096, name


def test_quota_cloudformation_logical_id_at_most_255_characters():
    """CloudFormation: logical IDs up to 255 characters, letters and digits."""
    for rendered in (render(FLEET), render_release()):
        for section in ("Resources", "Outputs", "Conditions", "Parameters"):
            for key in rendered.get(section, {}):
                assert len(key) <= 255 and key.isalnum(), (section, key)


def test_quota_cloudformation_resources_at_most_500(fleet):
    """CloudFormation: 500 resources per stack (and 200 outputs)."""
    assert len(fleet["Resources"]) <= 500, len(fleet["Resources"])
    assert len(fleet["Outputs"]) <= 200, len(fleet["Outputs"])


def test_quota_cloudformation_template_body_at_most_1_mb(fleet):
    """CloudFormation: a template body in S3 holds at most 1 MB (after the transforms here)."""
    assert len(json.dumps(fleet.template).encode()) <= 1_000_000


def test_quota_custom_resource_response_and_service_timeout(fleet):
    """CloudFormation custom resources: ServiceTimeout 1 to 3600 s."""
    for name, res in fleet["Resources"].items():
        if res["Type"].startswith("Custom::"):
            assert 1 <= int(res["Properties"]["ServiceTimeout"]) <= 3600, name


def test_quota_iam_managed_policy_document_at_most_6144_characters(fleet):
    """IAM: a managed policy document holds at most 6144 characters (without whitespace)."""
    for name, res in fleet["Resources"].items():
        if res["Type"] == "AWS::IAM::ManagedPolicy":
            doc = res["Properties"]["PolicyDocument"]
            text = worst_case_text(doc, fleet.params, fleet.declared) if "Fn::Sub" in doc else json.dumps(doc)
            assert len("".join(text.split())) <= 6144, name


def test_quota_cloudformation_template_body_inline():
    """CloudFormation: 51,200 bytes for a template passed inline (without S3).
    template.yaml is above it (about 63 KB: three written-out canary slots,
    the dashboard, the engine policy, and about 8 KB of comments) and is
    deployed from S3, as `sam deploy` and the release do; make bench writes
    the size into BENCHMARKS.md. This keeps it from creeping back towards
    the 141 KB of the written-out failover slots."""
    size = len((ROOT / "template.yaml").read_bytes())
    assert size <= 65_000, size
