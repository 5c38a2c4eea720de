"""Every path clusterctl keeps on a remote host, in one place: pure strings, no I/O.

Facts, plan, apply, the lock, the lock's records and the rollout all name these; one module
means a path moved here moves for all of them, and `paths.*` checks (model/pathcheck.py) refuse
the same folder the code writes into.
"""

from __future__ import annotations

# The one folder clusterctl owns on every host (front ends and, for the lock, backends).
STATE_DIR = "/var/lib/clusterctl"
# An uploaded file waits beside its target as ".NAME.clusterctl-new" until the rename.
TMP_SUFFIX = ".clusterctl-new"
# The host's copy of the cluster lock: a directory made by mkdir, its record inside.
LOCK_DIR = f"{STATE_DIR}/lock"


def frontend_state_dir(fe_name: str) -> str:
    """Where apply keeps one front end's backups, staging tree and reload-pending marker.

    Per front end, not per machine: two front ends on one machine (an HAProxy for the TCP
    services beside an nginx for the web, say) are applied in parallel and must never share a
    backup folder or a marker, or one's rollback restores the other's files.
    """
    return f"{STATE_DIR}/frontends/{fe_name}"


def manifest_path(fe_name: str) -> str:
    """Every path the last confirmed apply installed, one a line: what prune compares with."""
    return f"{frontend_state_dir(fe_name)}/manifest"


def pending_path(fe_name: str) -> str:
    """The marker an interrupted apply leaves between its rename and its reload."""
    return f"{frontend_state_dir(fe_name)}/reload-pending"


def backup_dir(fe_name: str) -> str:
    """The replaced files of the running apply, kept until it is confirmed or rolled back."""
    return f"{frontend_state_dir(fe_name)}/backup"


def stage_dir(fe_name: str) -> str:
    """The parent of every run's staging root; cleared before a new run stages."""
    return f"{frontend_state_dir(fe_name)}/stage"


def stage_root(fe_name: str, run_id: str) -> str:
    """Where this run checks the whole new tree: one folder per run, removed after the check."""
    return f"{stage_dir(fe_name)}/{run_id}"


def temp_path(target: str) -> str:
    """The upload beside `target`, hidden and suffixed so facts can spot one a killed run left."""
    d, _, b = target.rpartition("/")
    return f"{d}/.{b}{TMP_SUFFIX}"


def rollout_record(cluster: str) -> str:
    """Where a rollout records its progress on each host of the quorum: one file per cluster,
    so two inventories whose hosts overlap never resume from each other's record."""
    return f"{STATE_DIR}/rollout/{cluster}.json"
