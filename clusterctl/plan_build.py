"""Build a host's steps (plan_steps) from what the plan found: pure, no I/O.

The order is apply's since issue 4: clean up what a killed run left, the bind preflight again,
the whole new tree staged and validated under a staging root, the new files uploaded beside the
old ones, the old ones backed up, all renamed into place at once, reload, probe, confirm. The
rollback puts the backups back and reloads.
"""

from __future__ import annotations

from collections.abc import Sequence

from clusterctl.drivers import driver_for
from clusterctl.facts import manifest_path, pending_path
from clusterctl.model import vrrp
from clusterctl.model.queries import bracket
from clusterctl.model.schema import Frontend, Inventory
from clusterctl.model.semantics import frontend_services
from clusterctl.plan_steps import (
    Confirm,
    Phase,
    Preflight,
    Probe,
    PutFile,
    Reload,
    RunScript,
    Scheme,
    Step,
)
from clusterctl.preflight import named_dirs

# Re-exported: plan, apply and tests name them from here.
from clusterctl.remote_paths import backup_dir as backup_dir
from clusterctl.remote_paths import stage_dir as stage_dir
from clusterctl.remote_paths import stage_root as stage_root
from clusterctl.remote_paths import temp_path as temp_path
from clusterctl.render import File, HostFiles


def put(phase: Phase, path: str, f: File) -> PutFile:
    return PutFile(
        phase=phase,
        path=path,
        mode=f.mode,
        owner=f.owner,
        group=f.group,
        secret=f.secret,
        content=f.content,
    )


def reload_step(fe: Frontend, phase: Phase, ports: Sequence[int] = ()) -> Reload:
    driver = driver_for(fe.kind)
    return Reload(
        phase=phase,
        ports=tuple(sorted(set(ports))),
        reload=tuple(driver.reload_argv(fe)),
        start=tuple(driver.start_argv(fe)),
    )


def probes(inv: Inventory, fe: Frontend) -> list[Step]:
    """One probe per listener of the front end's services."""
    out: list[Step] = []
    for svc in frontend_services(inv, fe):
        for ln in svc.listen:
            address = "127.0.0.1" if ln.address == "*" else ln.address
            host = bracket(address)
            scheme: Scheme = "tcp" if svc.mode == "tcp" else ("https" if ln.tls else "http")
            out.append(Probe(scheme=scheme, address=host, port=ln.port))
    return out


def confirm(fe: Frontend, live: HostFiles) -> Confirm:
    return Confirm(
        manifest=manifest_path(fe.name),
        backup=backup_dir(fe.name),
        stage=stage_dir(fe.name),
        pending=pending_path(fe.name),
        installed=tuple(sorted(live)),
    )


def validate_steps(inv: Inventory, fe: Frontend, staged: HostFiles, root: str) -> list[Step]:
    """Check the whole new tree on the host, under `root`, before anything is replaced."""
    driver = driver_for(fe.kind)
    config = driver.paths(fe).config
    # Whatever an interrupted earlier run left in this front end's staging area goes first.
    steps: list[Step] = [RunScript(phase="validate", script="rm-tree", args=(stage_dir(fe.name),))]
    steps += [put("validate", root + path, f) for path, f in staged.items()]
    dirs = tuple(root + d for d in driver.runtime_dirs(fe))
    if dirs:
        steps.append(RunScript(phase="validate", script="mkdir", args=dirs, fails_as="stage"))
    argv = tuple(driver.validate_argv(root + config, root))
    steps.append(
        RunScript(
            phase="validate",
            script="exec",
            args=argv,
            fails_as=f"validate ({argv[0]})",
            hide=root,
            validator=True,
        )
    )
    # `apache2 -t` does not load certificates, and a graceful restart that cannot load them
    # stops Apache altogether: every kind gets the same pair check before anything moves.
    for svc in frontend_services(inv, fe):
        if svc.tls is None:
            continue
        paths = driver.tls_paths(fe, svc)
        pair = (root + paths["certificate"], root + paths["key"])
        steps.append(
            RunScript(
                phase="validate",
                script="tls-pair",
                args=pair,
                fails_as="validate (openssl)",
                hide=root,
            )
        )
    steps.append(RunScript(phase="validate", script="rm-tree", args=(root,), when="always"))
    return steps


def host_steps(
    inv: Inventory,
    fe: Frontend,
    *,
    run_id: str,
    root: str,
    staged: HostFiles,
    live: HostFiles,
    changes: Sequence[tuple[str, File]],
    gone: Sequence[str],
    pending: bool,
    temps: Sequence[str],
) -> tuple[tuple[Step, ...], tuple[Step, ...]]:
    """(steps, rollback) for a host with work to do and nothing refused. `fe`: as rendered (the
    version filled in); `changes`: the files to install (path, new file); `gone`: to remove."""
    steps: list[Step] = []
    if temps:
        steps.append(RunScript(phase="clean up", script="rm-files", args=tuple(temps)))
    targets = tuple(p for p, _ in changes) + tuple(gone)
    if not targets:  # only a reload left over from an interrupted apply, or only temps
        if pending:
            steps += [reload_step(fe, "reload"), *probes(inv, fe), confirm(fe, live)]
        return tuple(steps), ()
    driver = driver_for(fe.kind)
    config = driver.paths(fe).config
    text = live[config].content.decode("utf-8", "replace")
    # The plan may be minutes old (an operator reading it): a port taken meanwhile would fail
    # the reload. The staged check creates the config's folders under its own root, so whether
    # they exist on the host is asked here.
    if families := vrrp.nonlocal_families(inv, fe.name):
        # The address moves between members: a member not holding it binds it only with
        # non-local binding on, which its keepalived unit also keeps for the next boot.
        steps.append(
            RunScript(
                phase="preflight", script="nonlocal-bind", args=families, fails_as="preflight"
            )
        )
    steps.append(
        Preflight(
            kind=fe.kind,
            pid_file=driver.paths(fe).pid_file,
            dirs=tuple(named_dirs(fe.kind, text)),
            config=text,
        )
    )
    steps += validate_steps(inv, fe, staged, root)
    temps_new = tuple(temp_path(p) for p, _ in changes)
    steps += [put("upload", temp_path(p), f) for p, f in changes]
    cleanup = (
        [
            RunScript(phase=ph, script="rm-files", args=temps_new, when="failed")
            for ph in ("upload", "backup")
        ]
        if temps_new
        else []
    )
    steps += cleanup[:1]
    backup = backup_dir(fe.name)
    steps.append(
        RunScript(phase="backup", script="backup", args=(backup, *targets), fails_as="backup")
    )
    steps += cleanup[1:]
    swap = tuple(f"N:{p}" for p, _ in changes) + tuple(f"D:{p}" for p in gone)
    pending_marker = pending_path(fe.name)
    steps.append(
        RunScript(
            phase="rename", script="swap", args=(pending_marker, run_id, *swap), fails_as="rename"
        )
    )
    ports = [ln.port for svc in frontend_services(inv, fe) for ln in svc.listen]
    steps += [reload_step(fe, "reload", ports), *probes(inv, fe), confirm(fe, live)]
    rollback: tuple[Step, ...] = (
        RunScript(
            phase="rollback", script="restore", args=(backup, *targets), fails_as="restore backup"
        ),
        reload_step(fe, "rollback"),
        RunScript(phase="rollback", script="forget", args=(pending_marker, backup)),
    )
    return tuple(steps), rollback
