"""Every name and address of a lab, derived from its name alone (so `down` finds leftovers)."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass

from clusterctl.lab.types import LabError

LAB_NETWORK = ipaddress.ip_network("198.18.0.0/15")
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


@dataclass(frozen=True)
class Naming:
    """Every name and address of a lab, derived deterministically from its name."""

    name: str

    @property
    def tag(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()[:6]

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        if self.name == "lab":
            index = 0
        else:
            digest = hashlib.sha256(b"clusterctl-lab-subnet:" + self.name.encode()).digest()
            index = 1 + int.from_bytes(digest[:4], "big") % 511
        base = int(LAB_NETWORK.network_address) + index * 256
        return ipaddress.IPv4Network((base, 24))

    def address(self, offset: int) -> str:
        return str(self.subnet.network_address + offset)

    @property
    def gateway(self) -> str:
        return self.address(1)

    @property
    def bridge(self) -> str:
        return f"clbr{self.tag}"

    @property
    def veth_prefix(self) -> str:
        return f"clv{self.tag}"

    def veth(self, host: str) -> str:
        return f"{self.veth_prefix}{host}"

    @property
    def netns_prefix(self) -> str:
        return f"cl-{self.tag}-"

    def netns(self, host: str) -> str:
        return f"{self.netns_prefix}{host}"


def validate_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise LabError(
            f"invalid lab name {name!r}: use 1-32 lowercase letters, digits and '-', "
            "starting with a letter"
        )
