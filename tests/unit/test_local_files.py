"""Local files an inventory names are checked when it loads, before anything is uploaded: the TLS
key matches its certificate, nothing shipped is an SSH key or comes from where SSH keys live,
and SSH files are bounded regular files."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from clusterctl.errors import InventoryError
from clusterctl.model import load
from clusterctl.model.pathcheck import lab_roots

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "inventories" / "files"

INV = """\
cluster: t
frontends: [{name: lb1, kind: haproxy, address: 192.0.2.10}]
pools: [{name: app, servers: [{name: web1, address: 192.0.2.21, port: 8080}]}]
services:
  - name: web
    listen: [{port: 443, tls: true}]
    default_pool: app
    tls:
      certificate: CERT
      key: KEY
"""
KEY_AT = "inv.yaml:10:12: services[0].tls.key: "


def write_pair(folder: Path, name: str = "site") -> tuple[Path, Path]:
    """A fresh self-signed certificate and its key (EC P-256), as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    crt, pem = folder / f"{name}.crt", folder / f"{name}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return crt, pem


def rel(path: Path, tmp_path: Path) -> str:
    return str(path).replace(f"{tmp_path}/", "")


def problems(tmp_path: Path, cert: Path | str, key: Path | str, extra: str = "") -> list[str]:
    inv = tmp_path / "inv.yaml"
    inv.write_text(INV.replace("CERT", str(cert)).replace("KEY", str(key)) + extra)
    with pytest.raises(InventoryError) as info:
        load(inv)
    return [str(p).replace(f"{tmp_path}/", "") for p in info.value.problems]


def test_the_example_pair_matches_and_loads() -> None:
    inv = load(REPO / "inventories" / "full.yaml")
    assert inv.files["files/example.com.key"].startswith(b"-----BEGIN")


def test_a_key_of_another_certificate_is_refused_at_the_key(tmp_path: Path) -> None:
    crt, _ = write_pair(tmp_path / "a")
    _, other = write_pair(tmp_path / "b")
    out = problems(tmp_path, crt, other)
    assert out == [
        f"{KEY_AT}{rel(other, tmp_path)} does not match the certificate (its public key is another)"
    ]


def test_an_openssh_private_key_is_refused(tmp_path: Path) -> None:
    crt, _ = write_pair(tmp_path)
    ssh_key = tmp_path / "deploy_key"
    ssh_key.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    out = problems(tmp_path, crt, ssh_key)
    assert out == [
        f"{KEY_AT}{rel(ssh_key, tmp_path)}: is an SSH private key; clusterctl will not ship it"
    ]


def test_a_file_under_a_ssh_folder_is_refused_even_through_a_link(tmp_path: Path) -> None:
    crt, key = write_pair(tmp_path / "home" / ".ssh")
    out = problems(tmp_path, crt, key)
    assert len(out) == 2 and all("lies under a .ssh folder" in p for p in out), out
    (tmp_path / "innocent.key").symlink_to(key)
    (tmp_path / "innocent.crt").symlink_to(crt)
    out = problems(tmp_path, "innocent.crt", "innocent.key")
    assert out[1].startswith(
        f"{KEY_AT}innocent.key: leads to {rel(key, tmp_path)}, which lies under a .ssh"
    )


def test_a_file_in_a_lab_state_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labs = tmp_path / "labs"
    crt, key = write_pair(labs / "mylab")
    monkeypatch.setenv("CLUSTERCTL_LAB_ROOT", str(labs))
    out = problems(tmp_path, crt, key)
    assert out[1].startswith(KEY_AT) and "in a lab's state folder" in out[1], out


def test_lab_roots_follow_the_lab_module(monkeypatch: pytest.MonkeyPatch) -> None:
    from clusterctl.lab import core

    assert str(core.LABS_ROOT) in lab_roots()
    monkeypatch.setenv("CLUSTERCTL_LAB_ROOT", "/srv/labs/")
    assert "/srv/labs" in lab_roots()


def test_an_encrypted_key_or_a_key_in_the_certificate_is_refused(tmp_path: Path) -> None:
    crt, key = write_pair(tmp_path)
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    out = problems(tmp_path, crt, locked)
    assert out == [
        f"{KEY_AT}{rel(locked, tmp_path)} is encrypted; the servers reload unattended, so install an "
        "unencrypted key"
    ]
    both = tmp_path / "both.pem"
    both.write_bytes(crt.read_bytes() + key.read_bytes())
    out = problems(tmp_path, both, key)
    assert out == [
        f"inv.yaml:9:20: services[0].tls.certificate: {rel(both, tmp_path)} holds a private key"
    ]


RELEASE = """\
deploy:
  release:
    root: /srv/app
    artifact: ARTIFACT
    restart: [systemctl, restart, app]
"""


def test_release_artifacts_are_held_to_the_same_rules(tmp_path: Path) -> None:
    crt, key = write_pair(tmp_path / "tls")
    ok = tmp_path / "build"
    ok.mkdir()
    (ok / "app-1.0.tar.gz").write_bytes(b"\x1f\x8b\x08\x00")
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        INV.replace("CERT", str(crt)).replace("KEY", str(key))
        + RELEASE.replace("ARTIFACT", "build/app-{version}.tar.gz")
    )
    assert load(inv).deploy.release is not None
    at = "inv.yaml:14:15: deploy.release.artifact: "
    # An SSH key dressed up as a release.
    (ok / "app-2.0.tar.gz").write_bytes(key.read_bytes())
    out = problems(tmp_path, crt, key, RELEASE.replace("ARTIFACT", "build/app-{version}.tar.gz"))
    assert out == [
        f"{at}build/app-{{version}}.tar.gz app-2.0.tar.gz holds a private key, not a release"
    ]
    (ok / "app-2.0.tar.gz").unlink()
    # A folder that leads into ~/.ssh, written plainly or through a link.
    out = problems(tmp_path, crt, key, RELEASE.replace("ARTIFACT", "~/.ssh/{version}"))
    assert out == [
        f"{at}'~/.ssh/{{version}}' lies under a .ssh folder (SSH keys); clusterctl will not ship it"
    ]
    (tmp_path / "dot").mkdir()
    (tmp_path / "dot" / ".ssh").mkdir()
    (tmp_path / "sneaky").symlink_to(tmp_path / "dot" / ".ssh")
    out = problems(tmp_path, crt, key, RELEASE.replace("ARTIFACT", "sneaky/app-{version}"))
    assert len(out) == 1 and out[0].startswith(at) and "lies under a .ssh folder" in out[0], out


SSH_FILE = """\
defaults:
  ssh: {known_hosts: KNOWN}
"""


def test_ssh_files_must_be_bounded_regular_files(tmp_path: Path) -> None:
    crt, key = write_pair(tmp_path / "tls")
    at = "inv.yaml:12:22: defaults.ssh.known_hosts: "
    out = problems(tmp_path, crt, key, SSH_FILE.replace("KNOWN", "/dev/zero"))
    assert out == [f"{at}'/dev/zero' is a device or kernel file, not a file clusterctl can read"]
    fifo = tmp_path / "kh.fifo"
    os.mkfifo(fifo)
    out = problems(tmp_path, crt, key, SSH_FILE.replace("KNOWN", str(fifo)))
    assert out == [f"{at}{rel(fifo, tmp_path)} is not a regular file"]
    # /dev/null is a known_hosts some use on purpose (every host unknown): it reads as empty.
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        INV.replace("CERT", str(crt)).replace("KEY", str(key))
        + SSH_FILE.replace("KNOWN", "/dev/null")
    )
    assert load(inv).defaults.ssh.known_hosts == "/dev/null"


def test_connecting_refuses_an_unbounded_known_hosts(tmp_path: Path) -> None:
    # A known_hosts from ~/.ssh/config (not validated) or a file replaced since validation.
    from clusterctl.execute.ssh import Endpoint, Remote, SSHError

    fifo = tmp_path / "kh.fifo"
    os.mkfifo(fifo)
    for known in (str(fifo), "/dev/zero"):
        ep = Endpoint(name="lb1", address="127.0.0.1", port=9, known_hosts=known)
        with pytest.raises(SSHError, match=r"lb1: cannot read known_hosts: .* regular file"):
            Remote.connect(ep)
    ep = Endpoint(name="lb1", address="127.0.0.1", port=9, identity=str(fifo))
    with pytest.raises(SSHError, match=r"lb1: cannot read identity: .* regular file"):
        Remote.connect(ep)


def test_rollout_checks_the_artifact_once_the_version_fills_it_in(tmp_path: Path) -> None:
    # Validation saw only the pattern; the --version (here one holding a path) fills it in.
    from clusterctl.execute.deploy import StepFailed, _artifact
    from clusterctl.model.schema import Deploy, Release

    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "app-1.0.tar.gz").write_bytes(b"\x1f\x8b\x08\x00release")
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id").write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    os.mkfifo(tmp_path / "build" / "app-fifo.tar.gz")
    release = Release(root="/srv/app", artifact="build/app-{version}.tar.gz", restart=("x",))
    deploy = Deploy(release=release)
    assert _artifact(deploy, "1.0", tmp_path) == b"\x1f\x8b\x08\x00release"
    with pytest.raises(StepFailed, match=r"lies under a \.ssh folder"):
        _artifact(deploy, "../.ssh/id", tmp_path)
    with pytest.raises(StepFailed, match="not a regular file"):
        _artifact(deploy, "fifo", tmp_path)
