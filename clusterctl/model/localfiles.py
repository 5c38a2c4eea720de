"""Local files an inventory names, checked when it loads, before anything is uploaded.

TLS certificates and keys are read here (render stays pure): the key must be a private key that
matches the certificate. Nothing that clusterctl ships (TLS files, release artifacts) may be an
SSH private key or come from where those live (any .ssh folder, a lab's state folder). SSH files
(identity, known_hosts) must be bounded regular files, so a read can never hang or run forever.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

from clusterctl.errors import Problem
from clusterctl.model import pathcheck as pc
from clusterctl.model.schema import SSH, Inventory

MAX_TLS_FILE = 1024 * 1024
MAX_SSH_FILE = 16 * 1024 * 1024  # a known_hosts file for a large fleet
# Headers of private-key files that are SSH's own (OpenSSH, PuTTY, ssh.com) rather than TLS's.
_SSH_KEYS = (
    b"-----BEGIN OPENSSH PRIVATE KEY-----",
    b"PuTTY-User-Key-File-",
    b"---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----",
)
_HEAD = 64 * 1024


def resolve_local(path: str, base: Path) -> Path:
    """A local path from the inventory, relative to the inventory's folder, with ~ expanded."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def shipping_problem(real: Path, head: bytes) -> str | None:
    """Why a local file at `real` (resolved), starting with `head`, must not leave this machine."""
    if pc.is_system_path(str(real)):
        return f"leads to {real}, a system file; clusterctl will not read it"
    why = pc.secret_place(str(real))
    if why:
        return f"leads to {real}, which {why}"
    if any(marker in head for marker in _SSH_KEYS):
        return "is an SSH private key; clusterctl will not ship it"
    return None


def artifact_problem(local: Path) -> str | None:
    """Why a release artifact must not be shipped, or None (rollout checks it again)."""
    real = local.resolve()
    if real.exists() and not real.is_file():
        return f"leads to {real}, which is not a regular file"
    try:
        with real.open("rb") as fh:
            head = fh.read(_HEAD)
    except OSError:
        head = b""  # missing or unreadable: the reader says so in its own words
    why = shipping_problem(real, head)
    if why is None and b"PRIVATE KEY-----" in head:
        why = "holds a private key, not a release"
    return why


def read_shippable(local: Path, limit: int, too_big: Callable[[Path], str]) -> bytes:
    """A local file's bytes to ship, once it is clear where the path really leads (links, ../):
    a regular file of at most `limit` bytes that is no system file, secret or SSH key.
    ValueError says why not (`too_big(real)` when it is over the limit)."""
    real = local.resolve()
    why = shipping_problem(real, b"")
    if why:
        raise ValueError(why)
    info = real.stat()
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{real} is not a regular file")
    if info.st_size > limit:
        raise ValueError(too_big(real))
    data = real.read_bytes()
    why = shipping_problem(real, data)
    if why:
        raise ValueError(why)
    return data


def _read_tls_file(local: Path) -> bytes:
    """A TLS file's bytes."""
    return read_shippable(
        local, MAX_TLS_FILE, lambda real: f"{real} is larger than 1 MiB; not a PEM file"
    )


def key_mismatch(cert: bytes, key: bytes) -> str | None:
    """Why `key` is not the private key of the (first) certificate in `cert`, or None."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        leaf = x509.load_pem_x509_certificate(cert)
    except ValueError:
        return "the certificate cannot be read as a PEM certificate"
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except TypeError:
        return "is encrypted; the servers reload unattended, so install an unencrypted key"
    except (ValueError, UnsupportedAlgorithm):
        return "is not a PEM private key"
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(*spki) != private.public_key().public_bytes(*spki):
        return "does not match the certificate (its public key is another)"
    return None


def read_files(model: Inventory, base: Path) -> tuple[dict[str, bytes], list[Problem]]:
    """The TLS files' contents, and every problem with any local file the inventory names."""
    files: dict[str, bytes] = {}
    problems: list[Problem] = []
    for i, svc in enumerate(model.services):
        if svc.tls is None:
            continue
        read: dict[str, bytes] = {}
        for attr, marker in (("certificate", b"CERTIFICATE-----"), ("key", b"PRIVATE KEY-----")):
            ref = getattr(svc.tls, attr)
            at = svc.tls.at.get(attr, svc.tls.at[""])
            where = f"services[{i}].tls.{attr}"
            try:
                data = _read_tls_file(resolve_local(ref, base))
            except (OSError, ValueError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else str(exc)
                problems.append(Problem(at.file, at.line, at.col, f"{where}: {ref}: {why}"))
                continue
            if marker not in data or b"\r" in data:
                problems.append(
                    Problem(at.file, at.line, at.col, f"{where}: {ref} is not a PEM {attr} file")
                )
                continue
            if attr == "certificate" and b"PRIVATE KEY-----" in data:
                # The certificate is installed world-readable; a key in it would be too.
                problems.append(
                    Problem(at.file, at.line, at.col, f"{where}: {ref} holds a private key")
                )
                continue
            read[attr] = data
        if len(read) == 2:
            why = key_mismatch(read["certificate"], read["key"])
            if why:
                at = svc.tls.at.get("key", svc.tls.at[""])
                problems.append(
                    Problem(at.file, at.line, at.col, f"services[{i}].tls.key: {svc.tls.key} {why}")
                )
                continue
        files.update({getattr(svc.tls, attr): data for attr, data in read.items()})
    return files, problems + _ssh_files(model, base) + _artifact(model, base)


def _ssh_blocks(model: Inventory) -> list[tuple[str, SSH]]:
    blocks = [("defaults.ssh", model.defaults.ssh)]
    blocks += [(f"frontends[{i}].ssh", fe.ssh) for i, fe in enumerate(model.frontends)]
    for pi, pool in enumerate(model.pools):
        blocks += [(f"pools[{pi}].servers[{si}].ssh", s.ssh) for si, s in enumerate(pool.servers)]
    return blocks


def ssh_file_problem(path: Path) -> str | None:
    """Why an existing SSH file cannot be read safely (a FIFO would hang, a device never end)."""
    try:
        info = path.stat()
    except OSError:
        return None  # missing: connecting says so, with the fix
    if str(path) == "/dev/null":
        return None
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file"
    if info.st_size > MAX_SSH_FILE:
        return f"{path} is larger than {MAX_SSH_FILE // (1024 * 1024)} MiB"
    return None


def _ssh_files(model: Inventory, base: Path) -> list[Problem]:
    problems: list[Problem] = []
    for where, ssh in _ssh_blocks(model):
        for attr in ("identity", "known_hosts"):
            ref = getattr(ssh, attr)
            if ref is None:
                continue
            why = ssh_file_problem(resolve_local(ref, base))
            at = ssh.at.get(attr)
            if why and at is not None:
                problems.append(Problem(at.file, at.line, at.col, f"{where}.{attr}: {why}"))
    return problems


def _artifact(model: Inventory, base: Path) -> list[Problem]:
    rel = model.deploy.release
    if rel is None:
        return []
    at = rel.at.get("artifact", rel.at[""])
    pattern = resolve_local(rel.artifact, base)
    # The version is not known yet: check where the folder leads, and the releases built there.
    why = shipping_problem(pattern.parent.resolve() / pattern.name, b"")
    if why is None and pattern.parent.is_dir():
        for found in sorted(pattern.parent.glob(pattern.name.replace("{version}", "*")))[:100]:
            why = artifact_problem(found)
            if why:
                why = f"{found.name} {why}"
                break
    if why is None:
        return []
    return [Problem(at.file, at.line, at.col, f"deploy.release.artifact: {rel.artifact} {why}")]
