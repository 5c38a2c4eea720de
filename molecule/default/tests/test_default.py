"""molecule verify (default): every `clusterctl verify` check against the scenario's lab.

molecule.yml names the lab in CLUSTERCTL_VERIFY_LAB; the checks find its inventory, reach each
host with testinfra's ssh backend and strict host keys, and name the host in every failure.
"""

from clusterctl.verify.checks import *  # noqa: F403
