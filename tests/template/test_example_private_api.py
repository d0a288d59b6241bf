"""examples/private-api/template.yaml, resolved as CloudFormation would
deploy it: the tag contract with tether, the private API's resource policy,
nothing public, and security groups that admit only the request path
(API Gateway -> NLB -> ALB -> tasks).

A change that untags a target group, opens a group to a range, gives a task
a public IP or loosens the API's policy makes one of these fail."""

import json
import re

import pytest
from samcli.cli.types import CfnParameterOverridesType

from example_private_api import FULL, MINIMAL, NAT, resolve
from render import load as load_tether

VARIANTS = {"minimal": MINIMAL, "full": FULL, "nat": NAT, "nat-full": {**FULL, "Egress": "nat"}}
LAYER4 = {"TCP", "TLS", "UDP", "TCP_UDP"}
OPEN = {"0.0.0.0/0", "::/0"}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def stack(request):
    return resolve(VARIANTS[request.param])


@pytest.fixture(scope="module")
def full():
    return resolve(FULL)


def of_type(stack, kind):
    return {k: v["Properties"] for k, v in stack["Resources"].items() if v["Type"] == kind}


def ref(logical):
    return {"Ref": logical}


def one(stack, kind):
    found = of_type(stack, kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    return next(iter(found.items()))


def load_balancer(stack, kind):
    return one_where(of_type(stack, "AWS::ElasticLoadBalancingV2::LoadBalancer"), lambda p: p["Type"] == kind)


def one_where(resources, predicate):
    found = [(k, v) for k, v in resources.items() if predicate(v)]
    assert len(found) == 1, found
    return found[0]


def nlb_target_groups(stack):
    """The target groups the NLB's listeners forward to."""
    nlb, _ = load_balancer(stack, "network")
    listeners = [p for p in of_type(stack, "AWS::ElasticLoadBalancingV2::Listener").values() if p["LoadBalancerArn"] == ref(nlb)]
    assert listeners
    arns = [a["TargetGroupArn"] for p in listeners for a in p["DefaultActions"]]
    return {a["Ref"] for a in arns}


# ---------------------------------------------------------------- the tag contract


def test_the_nlb_target_groups_are_of_type_ip_and_tagged_with_the_alb(stack):
    alb, _ = load_balancer(stack, "application")
    groups = of_type(stack, "AWS::ElasticLoadBalancingV2::TargetGroup")
    nlb_groups = nlb_target_groups(stack)
    prefix = stack["Parameters"]["TagPrefix"]
    for name in nlb_groups:
        props = groups[name]
        assert props["TargetType"] == "ip", name
        assert props["Protocol"] in LAYER4, name
        # alb:<the ALB's ARN> (Ref of an ALB is its ARN): tether's exact source.
        assert props["Tags"] == [{"Key": f"{prefix}source", "Value": {"Fn::Sub": f"alb:${{{alb}}}"}}], name
        # No static targets: target-sync owns the group's membership.
        assert "Targets" not in props, name
    # The ALB's own groups (ECS registers the tasks) must never opt in.
    for name, props in groups.items():
        if name not in nlb_groups:
            assert not any(str(t["Key"]).endswith("source") for t in props.get("Tags", [])), name


def test_the_tls_listener_and_its_group_exist_only_with_a_certificate():
    assert len(nlb_target_groups(resolve(MINIMAL))) == 1
    full = resolve(FULL)
    groups = of_type(full, "AWS::ElasticLoadBalancingV2::TargetGroup")
    ports = sorted((groups[g]["Protocol"], groups[g]["Port"]) for g in nlb_target_groups(full))
    assert ports == [("TCP", 80), ("TLS", 443)]
    protocols = sorted(p["Protocol"] for p in of_type(full, "AWS::ElasticLoadBalancingV2::Listener").values())
    assert protocols == ["HTTP", "HTTPS", "TCP", "TLS"]


def test_the_tag_prefix_is_tethers_and_follows_the_parameter():
    tether = load_tether()["Parameters"]["TagPrefix"]
    example = resolve(MINIMAL)["Parameters"]["TagPrefix"]
    assert example == tether["Default"]
    staging = resolve({**MINIMAL, "TagPrefix": "tether-staging:"})
    for name in nlb_target_groups(staging):
        tags = of_type(staging, "AWS::ElasticLoadBalancingV2::TargetGroup")[name]["Tags"]
        assert [t["Key"] for t in tags] == ["tether-staging:source"]


def test_the_alb_routes_the_seed_paths_to_the_two_services(stack):
    rules = of_type(stack, "AWS::ElasticLoadBalancingV2::ListenerRule").values()
    routes = {(r["Conditions"][0]["PathPatternConfig"]["Values"][0], r["Actions"][0]["TargetGroupArn"]["Ref"]) for r in rules}
    assert routes == {("/api/books*", "BooksTargetGroup"), ("/api/authors*", "AuthorsTargetGroup")}
    services = of_type(stack, "AWS::ECS::Service")
    assert {s["LoadBalancers"][0]["TargetGroupArn"]["Ref"] for s in services.values()} == {"BooksTargetGroup", "AuthorsTargetGroup"}


# ---------------------------------------------------------------- the private API


def deny_unless_the_endpoint(policy, endpoint):
    """The policy denies execute-api:Invoke on everything unless the call
    comes through `endpoint`, and allows nothing else."""
    statements = policy["Statement"]
    denies = [s for s in statements if s["Effect"] == "Deny"]
    assert denies, policy
    assert any(
        s["Action"] == "execute-api:Invoke"
        and s["Resource"] == "execute-api:/*"
        and s["Condition"] == {"StringNotEquals": {"aws:SourceVpce": ref(endpoint)}}
        for s in denies
    ), policy
    for s in statements:
        assert s["Action"] == "execute-api:Invoke", s
        assert "NotAction" not in s and "NotResource" not in s, s


def test_the_api_is_private_and_its_policy_admits_only_the_vpc_endpoint(stack):
    name, api = one(stack, "AWS::ApiGateway::RestApi")
    endpoint, props = one_where(of_type(stack, "AWS::EC2::VPCEndpoint"), lambda p: p["ServiceName"]["Fn::Sub"].endswith(".execute-api"))
    assert api["EndpointConfiguration"] == {"Types": ["PRIVATE"], "VpcEndpointIds": [ref(endpoint)]}
    deny_unless_the_endpoint(api["Policy"], endpoint)
    # The integration goes through the VPC link to the NLB, nowhere else.
    _, link = one(stack, "AWS::ApiGateway::VpcLink")
    nlb, _ = load_balancer(stack, "network")
    assert link["TargetArns"] == [ref(nlb)]
    for method in of_type(stack, "AWS::ApiGateway::Method").values():
        assert method["Integration"]["ConnectionType"] == "VPC_LINK"


def test_the_custom_domain_admits_only_the_vpc_endpoint(full):
    _, domain = one(full, "AWS::ApiGateway::DomainNameV2")
    assert domain["EndpointConfiguration"] == {"Types": ["PRIVATE"]}
    deny_unless_the_endpoint(domain["Policy"], "ExecuteApiEndpoint")
    _, access = one(full, "AWS::ApiGateway::DomainNameAccessAssociation")
    assert access["AccessAssociationSource"] == ref("ExecuteApiEndpoint")
    assert not of_type(resolve(MINIMAL), "AWS::ApiGateway::DomainNameV2")


# ---------------------------------------------------------------- nothing public


def test_nothing_is_public_without_the_nat_option():
    for params in (MINIMAL, FULL):
        stack = resolve(params)
        for kind in ("AWS::EC2::InternetGateway", "AWS::EC2::NatGateway", "AWS::EC2::EIP", "AWS::EC2::VPCGatewayAttachment"):
            assert not of_type(stack, kind), kind
        assert all(r.get("DestinationCidrBlock") not in OPEN for r in of_type(stack, "AWS::EC2::Route").values())
        assert all(s["MapPublicIpOnLaunch"] is False for s in of_type(stack, "AWS::EC2::Subnet").values())


def test_the_nat_option_adds_one_public_subnet_and_nothing_runs_there(stack):
    subnets = of_type(stack, "AWS::EC2::Subnet")
    public = {k for k, v in stack["Resources"].items()
              if v["Type"] == "AWS::EC2::SubnetRouteTableAssociation"
              and any(r.get("GatewayId") and r["RouteTableId"] == v["Properties"]["RouteTableId"]
                      for r in of_type(stack, "AWS::EC2::Route").values())}
    public_subnets = {stack["Resources"][a]["Properties"]["SubnetId"]["Ref"] for a in public}
    nat = stack["Parameters"]["Egress"] == "nat"
    assert len(public_subnets) == (1 if nat else 0)
    assert len(subnets) == 2 + len(public_subnets)
    # Load balancers, tasks and endpoints only in the private subnets.
    placed = [p["Subnets"] for p in of_type(stack, "AWS::ElasticLoadBalancingV2::LoadBalancer").values()]
    placed += [s["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"] for s in of_type(stack, "AWS::ECS::Service").values()]
    placed += [e["SubnetIds"] for e in of_type(stack, "AWS::EC2::VPCEndpoint").values() if "SubnetIds" in e]
    for subnets_of in placed:
        assert {s["Ref"] for s in subnets_of} == {"PrivateSubnetA", "PrivateSubnetB"}


def test_load_balancers_are_internal_and_tasks_get_no_public_ip(stack):
    for name, lb in of_type(stack, "AWS::ElasticLoadBalancingV2::LoadBalancer").items():
        assert lb["Scheme"] == "internal", name
    for name, service in of_type(stack, "AWS::ECS::Service").items():
        assert service["LaunchType"] == "FARGATE", name
        assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED", name


def test_a_closed_vpc_has_the_endpoints_it_needs(stack):
    services = {p["ServiceName"]["Fn::Sub"].rsplit("}.", 1)[1]: p for p in of_type(stack, "AWS::EC2::VPCEndpoint").values()}
    params = stack["Parameters"]
    closed = params["Egress"] == "endpoints"
    two_regions = params["ApiDomainName"] != ""
    expected = {"s3", "execute-api"}
    if closed:
        expected |= {"ecr.api", "ecr.dkr", "logs"}
    if closed and two_regions:
        expected |= {"elasticloadbalancing", "ec2", "monitoring"}  # tether's functions in the VPC
    assert set(services) == expected
    assert services["s3"]["VpcEndpointType"] == "Gateway"
    for name, p in services.items():
        if name != "s3":
            assert p["VpcEndpointType"] == "Interface" and p["PrivateDnsEnabled"] is True, name


# ---------------------------------------------------------------- security groups


def ingress(stack):
    """Every ingress rule: (group, protocol, from, to, source)."""
    rules = []
    for name, sg in of_type(stack, "AWS::EC2::SecurityGroup").items():
        for r in sg.get("SecurityGroupIngress", []):
            rules.append((name, r))
    for r in of_type(stack, "AWS::EC2::SecurityGroupIngress").values():
        rules.append((r["GroupId"]["Ref"], r))
    out = set()
    for group, r in rules:
        source = r.get("CidrIp") or r.get("CidrIpv6") or r.get("SourceSecurityGroupId") or r.get("SourcePrefixListId")
        source = source["Ref"] if isinstance(source, dict) else source
        out.add((group, r["IpProtocol"], int(r["FromPort"]), int(r["ToPort"]), source))
    return out


def test_security_groups_admit_only_what_the_path_needs(stack):
    params = stack["Parameters"]
    port = int(params["ContainerPort"])
    vpc = params["VpcCidr"]
    tls = params["NlbCertificateArn"] != ""
    expected = {
        # The NLB admits nothing: the VPC link comes through PrivateLink.
        ("AlbSecurityGroup", "tcp", 80, 80, "NlbSecurityGroup"),
        ("TaskSecurityGroup", "tcp", port, port, "AlbSecurityGroup"),
        ("EndpointSecurityGroup", "tcp", 443, 443, vpc),
        ("ExecuteApiEndpointSecurityGroup", "tcp", 443, 443, vpc),
    }
    if tls:
        expected.add(("AlbSecurityGroup", "tcp", 443, 443, "NlbSecurityGroup"))
    if params["ClientCidr"]:
        expected.add(("ExecuteApiEndpointSecurityGroup", "tcp", 443, 443, params["ClientCidr"]))
    assert ingress(stack) == expected
    # Each part wears the group that admits only its predecessor.
    lbs = of_type(stack, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert load_balancer(stack, "application")[1]["SecurityGroups"] == [ref("AlbSecurityGroup")]
    nlb = load_balancer(stack, "network")[1]
    assert nlb["SecurityGroups"] == [ref("NlbSecurityGroup")] and len(lbs) == 2
    for service in of_type(stack, "AWS::ECS::Service").values():
        assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"] == [ref("TaskSecurityGroup")]


def test_the_load_balancers_send_only_to_the_next_hop(stack):
    groups = of_type(stack, "AWS::EC2::SecurityGroup")
    port = int(stack["Parameters"]["ContainerPort"])

    def egress(name):
        return {(r["IpProtocol"], int(r["FromPort"]), int(r["ToPort"]),
                 r["DestinationSecurityGroupId"]["Ref"] if "DestinationSecurityGroupId" in r else r["CidrIp"])
                for r in groups[name]["SecurityGroupEgress"]}

    assert egress("NlbSecurityGroup") == {("tcp", 80, 80, "AlbSecurityGroup"), ("tcp", 443, 443, "AlbSecurityGroup")}
    assert egress("AlbSecurityGroup") == {("tcp", port, port, "TaskSecurityGroup")}
    for name in groups:
        for proto, low, high, dest in egress(name):
            assert proto != "-1" and (low, high) != (0, 65535), name


# ---------------------------------------------------------------- the second stack: tether


# What the references in the output become once deployed (real shapes).
DEPLOYED = {
    "PrivateSubnetA": "subnet-0123456789abcdef0",
    "PrivateSubnetB": "subnet-0123456789abcdef1",
    "TetherSecurityGroup": "sg-0123456789abcdef0",
    "Api": "a1b2c3d4e5",
    "ExecuteApiEndpoint": "vpce-0123456789abcdef0",
    "Stage": "v1",
    "AWS::Region": "us-east-1",
    "AWS::URLSuffix": "amazonaws.com",
    "Zone": "Z0123456789ABCDEFGHIJ",
    "Target": "vpce-0123456789abcdef0-abcdefgh.execute-api.us-east-1.vpce.amazonaws.com",
}


def test_the_tether_overrides_name_tether_parameters_and_parse_as_sam_does():
    tether = load_tether()["Parameters"]
    for params, keys in ((MINIMAL, {"TagPrefix"}), (FULL, {"TagPrefix", "SubnetIds", "SecurityGroupIds",
                                                          "CanaryTargets", "HostedZoneId", "RecordName", "RecordTarget"})):
        stack = resolve(params)
        output = stack["Outputs"]["TetherParameterOverrides"]["Value"]
        text = output if isinstance(output, str) else output["Fn::Sub"]
        if isinstance(text, list):  # [text, variables]: give every ${...} a plausible value
            text = text[0]
        text = re.sub(r"\$\{([^}]+)\}", lambda m: {**stack["Parameters"], **DEPLOYED}[m.group(1)], text)
        parsed = dict(CfnParameterOverridesType().convert(text, None, None))
        assert set(parsed) == keys
        assert set(parsed) <= set(tether), set(parsed) - set(tether)
        for name, value in parsed.items():  # each value passes tether's own pattern
            items = value.split(",") if tether[name]["Type"] == "CommaDelimitedList" else [value]
            pattern = tether[name].get("AllowedPattern", ".*")
            assert all(re.fullmatch(pattern, i) for i in items), (name, value, pattern)
        if "CanaryTargets" in parsed:
            targets = json.loads(parsed["CanaryTargets"])
            assert [t["name"] for t in targets] == ["api"]
            assert targets[0]["url"].startswith("https://")


def test_the_samconfig_environments_fit_the_example_and_tethers_regions():
    import tomllib

    from example_private_api import PATH, load
    from render import ROOT

    mine = tomllib.loads((PATH.parent / "samconfig.toml").read_text())
    tethers = tomllib.loads((ROOT / "samconfig.toml").read_text())
    declared = load()["Parameters"]
    envs = {}
    for env in ("default", "primary", "secondary"):
        deploy = mine[env]["deploy"]["parameters"]
        params = dict(CfnParameterOverridesType().convert(deploy["parameter_overrides"], None, None))
        assert set(params) <= set(declared), set(params) - set(declared)
        assert {"BooksImage", "AuthorsImage"} <= set(params), env
        envs[env] = (deploy, params)
    for env in ("primary", "secondary"):
        # Each half of the pair in the region of tether's environment of the same name.
        assert envs[env][0]["region"] == tethers[env]["global"]["parameters"]["region"], env
    primary, secondary = envs["primary"][1], envs["secondary"][1]
    assert primary["VpcCidr"] != secondary["VpcCidr"]  # peered VPCs must not overlap
    assert primary["ClientCidr"] == secondary["VpcCidr"] and secondary["ClientCidr"] == primary["VpcCidr"]
    assert primary["ApiDomainName"] == secondary["ApiDomainName"]
    assert "HostedZoneName" in primary and "HostedZoneId" in secondary  # one zone, created once
