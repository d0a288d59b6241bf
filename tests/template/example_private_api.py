"""examples/private-api/template.yaml (plain CloudFormation, no transform),
loaded and resolved for given parameter values the way CloudFormation would:
conditions evaluated, resources whose condition is false dropped, Fn::If
branches chosen and AWS::NoValue removed. References to resources and
attributes stay symbolic ({"Ref": ...}, {"Fn::GetAtt": ...}).

`python example_private_api.py emulator [minimal] [Name=Value ...]` prints, as JSON,
the template to deploy into moto's CloudFormation and the resources a stack
with those parameters creates (the Rust test tests/tests/example_private_api.rs
uses it). The parameters are FULL (every part on) or, with `minimal`, MINIMAL
(one region), overridden by the arguments."""

import ipaddress
import json
import re
import sys
from pathlib import Path

from samcli.yamlhelper import yaml_parse

from evaluate import conditions

ROOT = Path(__file__).resolve().parents[2]
PATH = ROOT / "examples/private-api/template.yaml"

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/{}:1.0"
# One region: the required parameters only.
MINIMAL = {"BooksImage": IMAGE.format("books"), "AuthorsImage": IMAGE.format("authors")}
# Every optional part on (a closed VPC: Egress stays "endpoints").
FULL = {
    **MINIMAL,
    "ClientCidr": "10.30.0.0/16",
    "NlbCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/0b1c2d3e-backend",
    "BackendHostName": "backend.example.com",
    "ApiDomainName": "api.example.com",
    "ApiCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/4f5a6b7c-api",
    "HostedZoneName": "example.com",
    "PeerVpcId": "vpc-0123456789abcdef0",
    "PeerVpcRegion": "us-west-2",
}
NAT = {**MINIMAL, "Egress": "nat"}


def load() -> dict:
    return yaml_parse(PATH.read_text())


def parameter_values(template: dict, params: dict) -> dict:
    declared = template["Parameters"]
    missing = [k for k, v in declared.items() if "Default" not in v and k not in params]
    assert not missing, f"no value for the required parameters {missing}"
    unknown = set(params) - set(declared)
    assert not unknown, f"not parameters of the example: {unknown}"
    return {k: str(params.get(k, v.get("Default", ""))) for k, v in declared.items()}


NO_VALUE = object()
LAYER4 = {"TCP", "TLS", "UDP", "TCP_UDP"}


def _resolve(node, held: dict, values: dict):
    if isinstance(node, list):
        return [r for r in (_resolve(n, held, values) for n in node) if r is not NO_VALUE]
    if not isinstance(node, dict):
        return node
    if node.keys() == {"Fn::If"}:
        name, yes, no = node["Fn::If"]
        return _resolve(yes if held[name] else no, held, values)
    if node == {"Ref": "AWS::NoValue"}:
        return NO_VALUE
    if node.keys() == {"Ref"} and node["Ref"] in values:
        return values[node["Ref"]]
    if node.keys() == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
        # Parameters filled in; ${Resource} and ${Resource.Attribute} stay.
        text = re.sub(r"\$\{([A-Za-z0-9]+)\}", lambda m: values.get(m.group(1), m.group(0)), node["Fn::Sub"])
        return text if "${" not in text else {"Fn::Sub": text}
    out = {}
    for k, v in node.items():
        r = _resolve(v, held, values)
        if r is not NO_VALUE:
            out[k] = r
    return out


def resolve(params: dict) -> dict:
    """The resources and outputs a stack with these parameters has; parameter
    references replaced by their values."""
    template = load()
    values = parameter_values(template, params)
    held = conditions(template, values)
    out = {}
    for section in ("Resources", "Outputs"):
        out[section] = {
            k: _resolve({kk: vv for kk, vv in v.items() if kk != "Condition"}, held, values)
            for k, v in template[section].items()
            if "Condition" not in v or held[v["Condition"]]
        }
    out["Parameters"] = values
    return out


def _evaluate_cidr(node, values: dict):
    """Fn::Cidr [block, count, bits] with a parameter as the block, evaluated."""
    if isinstance(node, list):
        return [_evaluate_cidr(n, values) for n in node]
    if not isinstance(node, dict):
        return node
    if node.keys() == {"Fn::Cidr"}:
        block, count, bits = node["Fn::Cidr"]
        if isinstance(block, dict):
            block = values[block["Ref"]]
        network = ipaddress.ip_network(block)
        subnets = network.subnets(new_prefix=network.max_prefixlen - int(bits))
        return [str(s) for s, _ in zip(subnets, range(int(count)))]
    return {k: _evaluate_cidr(v, values) for k, v in node.items()}


def emulator(params: dict) -> dict:
    """What the Rust test deploys into moto, and what it should find there.

    The template is the real one, except what moto 5.2's CloudFormation
    cannot parse: Fn::Cidr (it does not implement it) is evaluated here, and
    each such change is listed in `changes` for the test to print. Resource
    types moto has no model for are not removed: moto skips them, and the
    test lists them."""
    template = load()
    values = parameter_values(template, params)
    changes = []
    created = resolve(params)["Resources"]
    for logical, res in template["Resources"].items():
        if logical not in created:
            continue
        evaluated = _evaluate_cidr(res, values)
        if evaluated != res:
            changes.append(f"{logical}: Fn::Cidr evaluated before deploying (moto's CloudFormation does not implement it)")
            template["Resources"][logical] = evaluated
    for logical, res in list(template["Resources"].items()):
        if logical in created and res["Type"] == "AWS::ElasticLoadBalancingV2::Listener" and res["Properties"].get("Protocol") in LAYER4:
            del template["Resources"][logical]
            changes.append(
                f"{logical}: removed (a {res['Properties']['Protocol']} listener of the NLB): moto's CloudFormation creates "
                "every AWS::ElasticLoadBalancingV2::LoadBalancer as an application load balancer (it ignores Type), "
                "which refuses TCP and TLS listeners"
            )
    expected = {k: v["Type"] for k, v in created.items() if k in template["Resources"]}
    # moto's CloudFormation drops a target group's Tags: the test applies
    # these, the template's own, with ${Resource} replaced by physical ids.
    tags = {
        k: [{"Key": t["Key"], "Value": t["Value"]["Fn::Sub"] if isinstance(t["Value"], dict) else t["Value"]} for t in v["Properties"]["Tags"]]
        for k, v in created.items()
        if v["Type"] == "AWS::ElasticLoadBalancingV2::TargetGroup" and "Tags" in v["Properties"]
    }
    return {"template": template, "parameters": values, "changes": changes, "resources": expected, "tags": tags}


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "emulator":
        print(__doc__)
        return 2
    base, args = (MINIMAL, argv[2:]) if argv[1:2] == ["minimal"] else (FULL, argv[1:])
    params = {**base, **dict(a.split("=", 1) for a in args)}
    print(json.dumps(emulator(params), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
