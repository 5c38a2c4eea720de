"""`clusterctl lab`: a real multi-host cluster on one machine (Linux namespaces)."""

from clusterctl.lab.core import HostStatus, LabError, LabHost, LabInfo, down, info, status, up
from clusterctl.lab.inventory import lab_inventory

__all__ = [
    "HostStatus",
    "LabError",
    "LabHost",
    "LabInfo",
    "down",
    "info",
    "lab_inventory",
    "status",
    "up",
]
