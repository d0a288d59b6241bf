"""The release (`make release`): a template with no transform that StackSets
and `aws cloudformation deploy` accept, zips that are the same bytes for the
same binary, and one version everywhere.

The template rendered here is the one `make release` writes
(scripts/release.py); tests/tests/release.rs deploys it into the emulator's
CloudFormation and runs its functions."""

import copy
import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from evaluate import conditions, created, environments
from render import (
    ATTRIBUTES,
    PARAMETERS,
    ROOT,
    load,
    pinned_parameters,
    release_module,
    release_parameters,
    render,
    render_release,
)

release = release_module()
release_template = release.release_template


@pytest.fixture(scope="module")
def rendered():
    return render_release()


def cargo() -> dict:
    with open(ROOT / "Cargo.toml", "rb") as f:
        return tomllib.load(f)


# ---------------------------------------------------------------- the template


def test_release_template_has_no_transform_macro_or_foreach(rendered):
    assert "Transform" not in rendered
    assert release_template.language_extension_leftovers(rendered) == []
    keys, values = set(), set()

    def walk(node):
        if isinstance(node, dict):
            keys.update(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        else:
            values.add(node)

    walk(rendered)
    assert not [k for k in keys if k.startswith("Fn::ForEach") or k in ("Fn::Transform", "Transform")]
    assert not {"AWS::Include", "AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"} & values
    assert not [k for k, v in rendered["Resources"].items() if v["Type"].startswith("AWS::Serverless::")]


def test_release_template_passes_cfn_lint(rendered, tmp_path):
    path = tmp_path / "template.json"
    path.write_text(json.dumps(rendered, indent=1))
    lint = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), str(path)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_release_does_not_depend_on_parameter_values(rendered):
    """The translator gets no values: were it to resolve a parameter (SAM does
    for a few properties), the release would hold its default, whatever the
    stack is given. Rendering with other values gives the same template."""
    assert render_release(PARAMETERS) == rendered


def test_release_is_the_same_for_every_region(rendered, monkeypatch):
    """The translator asks for a region (the partition of AWS managed policy
    ARNs); the release uses ${AWS::Partition} instead."""
    for region in ("eu-west-1", "cn-north-1", "us-gov-west-1"):
        monkeypatch.setenv("AWS_REGION", region)
        assert render_release() == rendered, region
    arns = re.findall(r'"arn:[^"]*', json.dumps(rendered))
    assert not [a for a in arns if a.startswith('"arn:aws:')], arns


def test_every_function_reads_its_zip_from_the_bucket_of_its_region(rendered):
    binaries = release_template.functions(load())
    lambdas = {k: v for k, v in rendered["Resources"].items() if v["Type"] == "AWS::Lambda::Function"}
    assert set(lambdas) == set(binaries)
    members = {tomllib.loads((ROOT / m / "Cargo.toml").read_text())["package"]["name"] for m in cargo()["workspace"]["members"]}
    for logical, res in lambdas.items():
        assert binaries[logical] in members, logical
        assert res["Properties"]["Code"] == {
            "S3Bucket": {"Fn::Sub": "${ArtifactBucketPrefix}-${AWS::Region}"},
            "S3Key": {"Fn::Sub": "${ArtifactKeyPrefix}/%s.zip" % binaries[logical]},
        }
        assert res["Properties"]["Architectures"] == ["arm64"]
        assert res["Properties"]["Handler"] == "bootstrap"
    params = rendered["Parameters"]
    assert params["ArtifactKeyPrefix"]["Default"] == f"tether/{release.version()}"
    assert "Default" not in params["ArtifactBucketPrefix"]
    # The longest bucket prefix with the longest region name is still a bucket name.
    longest = "a" * release_template.BUCKET_PREFIX_MAX + "-ap-southeast-5"
    assert len(longest) <= 63
    assert re.fullmatch(params["ArtifactBucketPrefix"]["AllowedPattern"], "a" * release_template.BUCKET_PREFIX_MAX)
    assert not re.fullmatch(params["ArtifactBucketPrefix"]["AllowedPattern"], "a" * (release_template.BUCKET_PREFIX_MAX + 1))


def test_release_creates_what_the_source_creates(rendered):
    """For a full deployment, the release creates the resources the SAM
    transform gives template.yaml, of the same types, and starts each
    function with the same environment. (What a pinned parameter rules out
    is neither here nor there.)"""
    params = release_parameters(rendered, PARAMETERS)
    source = render(params)
    made, expected = created(rendered, params), created(source, params)
    assert made == expected, (made ^ expected)
    for name in made:
        assert rendered["Resources"][name]["Type"] == source["Resources"][name]["Type"], name
    attributes = {**ATTRIBUTES, **{(k, "Ref"): f"tether-{k}" for k in made}}
    assert environments(rendered, params, attributes) == environments(source, params, attributes)
    assert len(made) > 25


def test_parameters_the_release_pins_or_drops_are_said(rendered):
    """Every parameter of template.yaml is a parameter of the release, or was
    used only by what a pinned parameter rules out; a pinned one allows only
    its default."""
    declared = load()["Parameters"]
    pinned = pinned_parameters(rendered)
    for name, parameter in declared.items():
        if name in pinned:
            assert pinned[name] == str(parameter.get("Default", "")).split(","), name
    dropped = set(declared) - set(rendered["Parameters"])
    assert not dropped or pinned, f"parameters dropped although nothing is pinned: {dropped}"
    assert set(rendered["Parameters"]) - set(declared) == {"ArtifactBucketPrefix", "ArtifactKeyPrefix"}


# ------------------------------------------------- AWS::LanguageExtensions, on a fixture

LANGUAGE_EXTENSIONS_FIXTURE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Transform": ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"],
    "Parameters": {
        "Names": {"Type": "CommaDelimitedList", "Default": "orders,billing"},
        "Prefix": {"Type": "String", "Default": "p"},
        "OnlyForOthers": {"Type": "String", "Default": ""},
    },
    "Conditions": {
        "HasNames": {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "Names"}]}, ""]}]},
        "NoNames": {"Fn::Equals": [{"Fn::Join": ["", {"Ref": "Names"}]}, ""]},
        "HasPrefix": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Prefix"}, ""]}]},
    },
    "Resources": {
        "Fn::ForEach::Topics": ["Name", {"Ref": "Names"}, {
            "Topic${Name}": {
                "Type": "AWS::SNS::Topic",
                "Condition": "HasNames",
                "Properties": {"TopicName": {"Fn::Sub": "${Prefix}-${Name}"}, "DisplayName": {"Fn::Sub": "topic ${Name}"}},
            },
        }],
        "Counter": {
            "Type": "AWS::SSM::Parameter",
            "Properties": {"Type": "String", "Value": {"Fn::If": ["HasPrefix", {"Fn::Sub": "${Prefix}"}, "none"]},
                           "Description": {"Fn::Length": {"Ref": "Names"}}},
        },
        "First": {
            "Type": "AWS::SSM::Parameter",
            "Properties": {"Type": "String", "Value": "the first topic",
                           "Name": {"Ref": {"Fn::Sub": ["Topic${N}", {"N": {"Fn::Select": [0, {"Ref": "Names"}]}}]}}},
        },
        "Listed": {
            "Type": "AWS::SSM::Parameter",
            "Properties": {"Type": "StringList", "Value": {"Fn::Join": [",", {"Ref": "Names"}]}},
        },
        "Dead": {
            "Type": "AWS::SSM::Parameter",
            "Condition": "NoNames",
            "Properties": {"Type": "String", "Value": {"Ref": "OnlyForOthers"}},
        },
    },
}


def test_language_extensions_are_expanded_and_their_parameters_pinned():
    """While template.yaml declares AWS::LanguageExtensions: loops and
    language-extension functions expanded for the default of the parameter
    they read, which the release then allows only; other parameters stay
    parameters; what the pinned value rules out is gone, with the parameters
    only it used."""
    fixture = copy.deepcopy(LANGUAGE_EXTENSIONS_FIXTURE)
    out, pinned = release_template.expand_language_extensions(fixture)
    assert fixture == LANGUAGE_EXTENSIONS_FIXTURE, "the input is left as it was"
    assert pinned == {"Names": ["orders", "billing"]}
    assert out["Transform"] == ["AWS::Serverless-2016-10-31"]
    res = out["Resources"]
    assert sorted(res) == sorted(["Counter", "First", "Listed", "Topicorders", "Topicbilling"])
    assert res["Topicorders"]["Properties"] == {"TopicName": {"Fn::Sub": "${Prefix}-orders"}, "DisplayName": "topic orders"}
    assert res["Counter"]["Properties"]["Description"] == 2
    assert res["Counter"]["Properties"]["Value"] == {"Fn::If": ["HasPrefix", {"Fn::Sub": "${Prefix}"}, "none"]}
    assert res["First"]["Properties"]["Name"] == {"Ref": "Topicorders"}
    assert "HasNames" not in out["Conditions"] and "HasPrefix" in out["Conditions"]
    assert "Condition" not in res["Topicorders"], "a condition the pinned value decides is applied"

    rendered = release_template.render(fixture, "9.9.9")
    assert release_template.language_extension_leftovers(rendered) == []
    assert rendered["Parameters"]["Names"]["AllowedValues"] == ["orders", "billing"]
    assert "OnlyForOthers" not in rendered["Parameters"]
    assert rendered["Parameters"]["Prefix"] == {"Type": "String", "Default": "p"}


def test_a_template_without_language_extensions_is_translated_as_it_is():
    fixture = copy.deepcopy(LANGUAGE_EXTENSIONS_FIXTURE)
    fixture["Transform"] = "AWS::Serverless-2016-10-31"
    del fixture["Resources"]["Fn::ForEach::Topics"]
    del fixture["Resources"]["First"]
    fixture["Resources"]["Counter"]["Properties"]["Description"] = "plain"
    rendered = release_template.render(fixture, "9.9.9")
    assert "Transform" not in rendered
    assert rendered["Parameters"]["Names"] == fixture["Parameters"]["Names"]
    assert set(rendered["Resources"]) == {"Counter", "Dead", "Listed"}
    assert rendered["Conditions"] == fixture["Conditions"]


def test_a_transform_the_release_cannot_render_is_refused():
    fixture = copy.deepcopy(LANGUAGE_EXTENSIONS_FIXTURE)
    fixture["Transform"] = ["AWS::Serverless-2016-10-31", "MyMacro"]
    with pytest.raises(release_template.ReleaseError, match="MyMacro"):
        release_template.render(fixture, "9.9.9")


# ---------------------------------------------------------------- the zips


def fake_elf(machine: int, body: bytes) -> bytes:
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    header[18:20] = machine.to_bytes(2, "little")
    return bytes(header) + body


def test_a_zip_is_the_same_bytes_for_the_same_binary(tmp_path):
    binary = fake_elf(183, os.urandom(4096) * 4)
    first = release.bootstrap_zip(binary)
    assert release.bootstrap_zip(binary) == first
    path = tmp_path / "x.zip"
    path.write_bytes(first)
    with zipfile.ZipFile(path) as z:
        (entry,) = z.infolist()
        assert entry.filename == "bootstrap"
        assert entry.date_time == (1980, 1, 1, 0, 0, 0)
        assert entry.external_attr >> 16 == 0o100755, "Lambda runs bootstrap: it must be executable"
        assert entry.compress_type == zipfile.ZIP_DEFLATED
        assert z.read("bootstrap") == binary


def write_binaries(directory: Path, machine: int, layout: str) -> None:
    for name in sorted(set(release_template.functions(load()).values())):
        path = directory / name / "bootstrap" if layout == "lambda" else directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(fake_elf(machine, name.encode() * 1000))


def test_package_twice_gives_the_same_release(tmp_path):
    """Same binaries (here written at different times, in cargo lambda's and
    cargo's layouts), same release, byte for byte."""
    write_binaries(tmp_path / "a", 183, "lambda")
    os.utime(tmp_path / "a", (0, 0))
    write_binaries(tmp_path / "b", 183, "cargo")
    sums_a = release.package(tmp_path / "a", "aarch64", tmp_path / "out-a")
    sums_b = release.package(tmp_path / "b", "aarch64", tmp_path / "out-b")
    assert sums_a == sums_b
    names = sorted(p.name for p in (tmp_path / "out-a").iterdir())
    assert names == sorted(["SHA256SUMS", "INSTALL.md", "template.json", "custom-resources.zip", "health-canary.zip", "target-sync.zip"])
    for name in names:
        assert (tmp_path / "out-a" / name).read_bytes() == (tmp_path / "out-b" / name).read_bytes(), name
    lines = (tmp_path / "out-a" / "SHA256SUMS").read_text().splitlines()
    assert len(lines) == len(names) - 1
    for line in lines:
        digest, name = line.split("  ")
        assert hashlib.sha256((tmp_path / "out-a" / name).read_bytes()).hexdigest() == digest, name
    assert json.loads((tmp_path / "out-a" / "template.json").read_text()) == render_release()
    install = (tmp_path / "out-a" / "INSTALL.md").read_text()
    assert f"tether {release.version()}" in install and "@" not in install


def test_package_refuses_a_binary_of_another_architecture(tmp_path):
    write_binaries(tmp_path, 62, "lambda")
    with pytest.raises(release_template.ReleaseError, match="not aarch64"):
        release.package(tmp_path, "aarch64", tmp_path / "out")
    assert not (tmp_path / "out" / "SHA256SUMS").exists()


# ---------------------------------------------------------------- one version, one licence


def test_the_version_and_licence_come_from_the_workspace():
    package = cargo()["workspace"]["package"]
    assert release.version() == package["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", package["version"])
    for member in cargo()["workspace"]["members"]:
        manifest = tomllib.loads((ROOT / member / "Cargo.toml").read_text())["package"]
        assert manifest["version"] == {"workspace": True}, member
        assert manifest["license"] == {"workspace": True}, member
    assert package["license"] == "Apache-2.0"
    assert (ROOT / "LICENSE").read_text().split()[:4] == ["Apache", "License", "Version", "2.0,"]


def test_serverless_application_repository_metadata_agrees_with_the_workspace():
    """AWS::ServerlessRepo::Application: required fields and their patterns
    (https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/serverless-sam-template-publishing-applications-metadata-properties.html),
    no intrinsic functions, the workspace's version and licence."""
    app = load()["Metadata"]["AWS::ServerlessRepo::Application"]
    version = cargo()["workspace"]["package"]["version"]
    assert re.fullmatch(r"[a-zA-Z0-9\-]+", app["Name"]) and len(app["Name"]) <= 140
    assert 1 <= len(app["Description"]) <= 256
    assert re.fullmatch(r"^[a-z0-9](([a-z0-9]|-(?!-))*[a-z0-9])?$", app["Author"]) and len(app["Author"]) <= 127
    assert app["SemanticVersion"] == version
    assert app["SourceCodeUrl"].endswith(f"/tree/v{version}")
    assert app["SpdxLicenseId"] == cargo()["workspace"]["package"]["license"]
    for key in ("LicenseUrl", "ReadmeUrl"):
        assert (ROOT / app[key]).is_file(), key
    assert all(isinstance(v, (str, list)) for v in app.values()), "no intrinsic functions"
    assert all(1 <= len(label) <= 127 for label in app["Labels"]) and len(app["Labels"]) <= 10


def test_the_sar_template_points_every_function_at_the_release_zip(tmp_path):
    out = tmp_path / "sar.json"
    release.sar_template(tmp_path / "dist", out)
    template = json.loads(out.read_text())
    for logical, name in release_template.functions(load()).items():
        assert template["Resources"][logical]["Properties"]["CodeUri"] == str((tmp_path / "dist" / f"{name}.zip").resolve())
    assert "CodeUri" not in template["Globals"]["Function"]
    assert Path(template["Metadata"]["AWS::ServerlessRepo::Application"]["LicenseUrl"]).is_file()


# ---------------------------------------------------------------- samconfig


def test_every_samconfig_environment_deploys_a_no_op_without_failing():
    """A deploy that changes nothing must not fail CI (sam deploy fails on an
    empty change set unless told otherwise), in every environment."""
    with open(ROOT / "samconfig.toml", "rb") as f:
        config = tomllib.load(f)
    environments_ = [k for k in config if k != "version"]
    assert {"default", "primary", "secondary"} <= set(environments_)
    for name in environments_:
        assert config[name]["deploy"]["parameters"]["fail_on_empty_changeset"] is False, name
