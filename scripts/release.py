"""Packages a tether release: `dist/tether-<version>/` with one zip per
function, the transform-free template, SHA256SUMS and INSTALL.md.

    python scripts/release.py version
    python scripts/release.py template [OUT]
    python scripts/release.py package --binaries DIR --arch aarch64 --out DIR
    python scripts/release.py sar-template --release DIR --out FILE

`make release` builds the arm64 binaries once and runs `package`; the tests
run the very same `package` on the host's debug binaries (x86_64), deploy the
result into the emulator's CloudFormation and run its functions from there.

Same input, same bytes: each zip holds one entry, `bootstrap`, with a fixed
timestamp (1980-01-01, the earliest a zip can hold), mode 0755 and deflate at
level 9, so the bytes depend only on the binary (and on zlib, which is
Python's own for a given Python build). The template is written with a
fixed indentation and the key order of template.yaml.
"""

import argparse
import copy
import functools
import hashlib
import io
import json
import sys
import tomllib
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import release_template  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
# ELF e_machine values (the System V ABI's list).
MACHINES = {"aarch64": 183, "x86_64": 62}


def version() -> str:
    """The one version of tether: [workspace.package] in Cargo.toml."""
    with open(ROOT / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["workspace"]["package"]["version"]


def load_template() -> dict:
    """template.yaml, parsed (a fresh copy each time; parsed once per content)."""
    return copy.deepcopy(_parse((ROOT / "template.yaml").read_text()))


@functools.cache
def _parse(text: str) -> dict:
    from samcli.yamlhelper import yaml_parse

    return yaml_parse(text)


def render() -> dict:
    return release_template.render(load_template(), version())


def template_json(rendered: dict) -> bytes:
    return (json.dumps(rendered, indent=1, ensure_ascii=False) + "\n").encode()


def elf_machine(binary: bytes) -> int:
    """The e_machine of a 64-bit little-endian ELF executable."""
    if binary[:4] != b"\x7fELF" or binary[4] != 2 or binary[5] != 1:
        raise release_template.ReleaseError("not a 64-bit little-endian ELF file")
    return int.from_bytes(binary[18:20], "little")


def bootstrap_zip(binary: bytes) -> bytes:
    """A Lambda deployment package holding `binary` as `bootstrap`, the same
    bytes for the same binary."""
    entry = zipfile.ZipInfo("bootstrap", date_time=ZIP_TIME)
    entry.create_system = 3  # Unix, so that the mode below is read
    entry.external_attr = 0o100755 << 16
    entry.compress_type = zipfile.ZIP_DEFLATED
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr(entry, binary, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return out.getvalue()


def find_binary(binaries: Path, name: str) -> Path:
    """`<dir>/<name>/bootstrap` (cargo lambda's layout) or `<dir>/<name>` (cargo's)."""
    for path in (binaries / name / "bootstrap", binaries / name):
        if path.is_file():
            return path
    raise release_template.ReleaseError(f"no binary {name} in {binaries} (looked for {name}/bootstrap and {name})")


def install_md(v: str, names: list) -> str:
    text = (ROOT / "scripts/INSTALL.md").read_text()
    return text.replace("@VERSION@", v).replace("@ZIPS@", ", ".join(f"`{n}.zip`" for n in names))


def package(binaries: Path, arch: str, out: Path) -> dict:
    """Writes the release into `out`; returns file name to SHA-256."""
    v = version()
    rendered = render()
    names = sorted(set(release_template.functions(load_template()).values()))
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in names:
        binary = find_binary(binaries, name).read_bytes()
        machine = elf_machine(binary)
        if machine != MACHINES[arch]:
            raise release_template.ReleaseError(f"{name}: ELF machine {machine}, not {arch} ({MACHINES[arch]})")
        files[f"{name}.zip"] = bootstrap_zip(binary)
    files["template.json"] = template_json(rendered)
    files["INSTALL.md"] = install_md(v, names).encode()
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}
    files["SHA256SUMS"] = "".join(f"{digest}  {name}\n" for name, digest in sums.items()).encode()
    for name, data in files.items():
        (out / name).write_bytes(data)
    return sums


def sar_template(release: Path, out: Path) -> None:
    """template.yaml with each function's CodeUri pointing at the release's
    zip, for `sam package` and `sam publish` (the Serverless Application
    Repository copies the code from the packaged template). The Serverless
    Application Repository takes only the AWS::Serverless-2016-10-31
    transform ("Provided Transform ... is unsupported, use one of the
    following ['AWS::Serverless-2016-10-31']", aws/serverless-application-model#859):
    AWS::LanguageExtensions, while template.yaml declares it, is expanded as
    for the release template."""
    template = load_template()
    if release_template.LANGUAGE_EXTENSIONS in release_template.transforms(template):
        template, pinned = release_template.expand_language_extensions(template)
        for name, value in pinned.items():
            release_template.pin(template["Parameters"][name], name, value)
        template["Transform"] = release_template.SERVERLESS
    for logical, name in release_template.functions(template).items():
        template["Resources"][logical]["Properties"]["CodeUri"] = str((release / f"{name}.zip").resolve())
    template.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
    license_file = template["Metadata"]["AWS::ServerlessRepo::Application"]
    for key in ("LicenseUrl", "ReadmeUrl"):
        if key in license_file:
            license_file[key] = str((ROOT / license_file[key]).resolve())
    out.write_text(json.dumps(template, indent=1) + "\n")


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version")
    t = sub.add_parser("template")
    t.add_argument("out", nargs="?")
    p = sub.add_parser("package")
    p.add_argument("--binaries", type=Path, required=True)
    p.add_argument("--arch", choices=sorted(MACHINES), required=True)
    p.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("sar-template")
    s.add_argument("--release", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "version":
            print(version())
        elif args.command == "template":
            data = template_json(render())
            Path(args.out).write_bytes(data) if args.out else sys.stdout.buffer.write(data)
        elif args.command == "package":
            for name, digest in package(args.binaries, args.arch, args.out).items():
                print(f"{digest}  {args.out / name}")
        else:
            sar_template(args.release, args.out)
    except release_template.ReleaseError as e:
        print(f"release: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
