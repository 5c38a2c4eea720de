"""The command line: parse flags, call the core, print results. No logic lives here."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from clusterctl import __version__
from clusterctl.errors import ClusterctlError, InventoryError

app = typer.Typer(
    name="clusterctl",
    help="Declarative HAProxy, nginx and Apache front ends for a web cluster: "
    "validate and render an inventory, push it over SSH, roll out releases with zero failed "
    "requests.",
    epilog="Exit status: 0 success; 1 any error, usage errors included; 2 changes pending "
    "(only plan --detailed-exitcode).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
lab_app = typer.Typer(help="A local cluster of network-namespace hosts to rehearse on.")
app.add_typer(lab_app, name="lab")

Inventory = Annotated[
    Path, typer.Option("--inventory", "-i", help="Inventory YAML file.", show_default=False)
]


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _version(value: bool) -> None:
    if value:
        _out(f"clusterctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    pass


@app.command()
def validate(inventory: Inventory) -> None:
    """Check an inventory; print every problem as FILE:LINE:COL: message."""
    from clusterctl.model import load

    inv = load(inventory)
    _out(
        f"{inventory}: valid ({len(inv.frontends)} front ends, {len(inv.pools)} pools, "
        f"{len(inv.services)} services)"
    )


@app.command()
def render(
    inventory: Inventory,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder to write DIR/<host>/<path> into.")
    ] = Path("out"),
    check: Annotated[
        bool, typer.Option("--check", help="Run haproxy -c / nginx -t / apache2 -t on the result.")
    ] = False,
) -> None:
    """Write every file each front end would get, as DIR/<host>/<absolute path>."""
    from clusterctl.localcheck import check_all, write_tree
    from clusterctl.model import load
    from clusterctl.render import render as render_all

    inv = load(inventory)
    rendered = render_all(inv)
    results = check_all(inv) if check else []
    for host, files in rendered.items():
        write_tree(files, output / host)
        for path in files:
            _out(f"{output / host}{path}")
    failed = [r for r in results if not r.ok]
    for r in results:
        _out(f"{r.host}: {r.kind} config {'valid' if r.ok else 'INVALID'}")
    if failed:
        raise ClusterctlError(
            "\n".join(f"{r.host}: {r.kind} rejected the config: {r.output}" for r in failed)
        )


Limit = Annotated[
    str | None,
    typer.Option(
        "--limit", help="Only these front ends (comma-separated names).", show_default=False
    ),
]
Forks = Annotated[int, typer.Option("--forks", min=1, max=256, help="Hosts worked on at once.")]
LockWait = Annotated[
    float, typer.Option("--lock-wait", min=0, help="Seconds to wait for the cluster lock.")
]
OutputFormat = Annotated[str, typer.Option("--output", help="text or json.", show_default=True)]


def _limit(text: str | None, known: list[str], flag: str = "--limit") -> list[str] | None:
    """The names of a selection flag; None when it is not given.

    A given but blank selection (`--limit ""`, an unset CI variable) is an error, never "all".
    """
    if text is None:
        return None
    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names:
        raise ClusterctlError(
            f"{flag} {text!r} names nothing; name one or more of: {', '.join(sorted(known))}"
        )
    return names


def _frontend_names(inv: Any) -> list[str]:
    return [fe.name for fe in inv.frontends]


def _output(value: str) -> str:
    if value not in ("text", "json"):
        raise ClusterctlError(f"--output must be text or json, not {value!r}")
    return value


@app.command()
def plan(
    inventory: Inventory,
    limit: Limit = None,
    forks: Forks = 10,
    detailed_exitcode: Annotated[
        bool,
        typer.Option("--detailed-exitcode", help="Exit 0 no changes, 2 changes pending, 1 error."),
    ] = False,
    output: OutputFormat = "text",
) -> None:
    """Show what apply would change on each front end (a diff per file); changes nothing."""
    import json

    from clusterctl.execute.runner import make_plan
    from clusterctl.model import load
    from clusterctl.plan import plan_json
    from clusterctl.ui import console, print_plan

    fmt = _output(output)
    inv = load(inventory)
    the_plan = make_plan(inv, _limit(limit, _frontend_names(inv)), forks)
    if fmt == "json":
        _out(json.dumps(plan_json(the_plan), indent=2))
    else:
        print_plan(the_plan, console())
    if the_plan.failed:
        raise typer.Exit(1)
    if detailed_exitcode and the_plan.changed:
        raise typer.Exit(2)


@app.command()
def apply(
    inventory: Inventory,
    limit: Limit = None,
    forks: Forks = 10,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    lock_wait: LockWait = 0.0,
) -> None:
    """Push configs over SSH: validate on the host, swap atomically, reload, probe, or roll back."""
    from clusterctl.execute.quorum import named
    from clusterctl.execute.runner import cluster_lock, execute_plan, make_plan, select
    from clusterctl.model import load
    from clusterctl.ui import console, print_plan, print_results

    inv = load(inventory)
    targets = _limit(limit, _frontend_names(inv))
    select(inv, targets)  # unknown names are refused before the lock is taken
    out = console()
    if not yes and not sys.stdin.isatty():
        raise ClusterctlError("apply needs confirmation: run it on a terminal or pass --yes")
    with cluster_lock(inv, "apply", lock_wait):
        the_plan = make_plan(inv, targets, forks)
        print_plan(the_plan, out)
        if not the_plan.changed and not the_plan.failed:
            out.print("nothing to do")
            return
        if the_plan.changed and not yes and not typer.confirm("Apply these changes?"):
            raise ClusterctlError("apply cancelled; nothing was changed")

        def progress(host: str, step: str) -> None:
            console(stderr=True).print(f"{host}: {step}")

        results = execute_plan(inv, the_plan, forks, progress)
    print_results(results, out)
    bad = [r for r in results if r.status in ("failed", "rolled back")]
    if bad:
        raise ClusterctlError(
            f"{len(bad)} of {len(results)} front end(s) not applied: "
            + "; ".join(named(r.host, r.message) for r in bad)  # "lb2: lb2: ..." never
        )


def _emitter(fmt: str) -> Callable[[Any], None]:
    from rich.text import Text

    from clusterctl.rollout import event_json
    from clusterctl.ui import console

    err = console(stderr=True)

    def emit(e: Any) -> None:
        if fmt == "json":
            _out(event_json(e))
        else:
            note = f" ({e.message})" if e.message else ""
            err.print(Text(f"{e.node:<8} {e.step:<8} {e.status:<7} {e.elapsed:6.2f}s{note}"))

    return emit


@app.command()
def rollout(
    inventory: Inventory,
    version: Annotated[str, typer.Option("--version", help="Release to roll out.")],
    batch: Annotated[
        str | None,
        typer.Option(
            "--batch",
            help="Nodes at once: a count (2) or a percentage (25%); default deploy.batch.",
            show_default=False,
        ),
    ] = None,
    pool: Annotated[
        list[str] | None, typer.Option("--pool", help="Only nodes of this pool (repeatable).")
    ] = None,
    drain_timeout: Annotated[
        float | None,
        typer.Option("--drain-timeout", help="Seconds to wait for sessions (default: inventory)."),
    ] = None,
    cut: Annotated[
        bool, typer.Option("--cut", help="Deploy anyway when sessions outlast the drain timeout.")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip nodes a stopped rollout already upgraded.")
    ] = False,
    output: OutputFormat = "text",
    lock_wait: LockWait = 0.0,
) -> None:
    """Upgrade backend nodes one batch at a time: drain, deploy, check privately, restore."""
    from clusterctl import rollout as ro
    from clusterctl.execute.runner import cluster_lock
    from clusterctl.model import load

    fmt = _output(output)
    inv = load(inventory)
    opts = ro.Options(version, pool, batch, drain_timeout, cut, resume)
    ro.plan_batches(inv, opts)  # refuse a batch that breaks the floor before touching anything
    with cluster_lock(inv, f"rollout {version}", lock_wait):
        report = ro.run(inv, opts, _emitter(fmt))
    if fmt == "text":
        _out(f"rolled out {version} to {', '.join(report.upgraded) or 'no node'}")
        for t in report.times:
            overhead = t.total - t.deploy - t.drain_wait
            _out(
                f"  {t.node}: {t.total:.2f}s (deploy {t.deploy:.2f}s, drain wait "
                f"{t.drain_wait:.2f}s, overhead {overhead:.2f}s)"
            )


def _by_hand(
    inventory: Path, node: str, what: str, lock_wait: float, step: Callable[[Any], object]
) -> None:
    """Drain or restore one node under the cluster lock: rollout's own steps, run by hand."""
    from clusterctl import rollout as ro
    from clusterctl.execute.runner import cluster_lock
    from clusterctl.model import load

    inv = load(inventory)
    ro.find_server(inv, node)
    with cluster_lock(inv, f"{what} {node}", lock_wait), ro.open_cluster(inv) as cluster:
        ro.preflight(cluster)
        step(cluster)


def _restore_hint(inventory: Path, node: str) -> str:
    import shlex

    return f"clusterctl restore -i {shlex.quote(str(inventory))} {shlex.quote(node)}"


@app.command()
def drain(
    inventory: Inventory,
    node: Annotated[str, typer.Argument(help="Backend server name.")],
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for sessions.")] = 60,
    force: Annotated[
        bool,
        typer.Option("--force", help="Drain even if a pool drops below deploy.min_available."),
    ] = False,
    output: OutputFormat = "text",
    lock_wait: LockWait = 0.0,
) -> None:
    """Take a node out on every front end and wait until its sessions are gone.

    Refused when a pool of the node would keep fewer serving nodes than deploy.min_available
    (counted from what the front ends report now), unless --force.
    """
    from clusterctl import rollout as ro

    emit = _emitter(_output(output))

    def run(cluster: Any) -> None:
        if not force:
            out = {**ro.declared_out(cluster.inv), **ro.live_out(cluster)}
            ro.check_floor(cluster.inv, [node], out, fix="--force")
        ro.drain(cluster, node, timeout, False, emit)

    _by_hand(inventory, node, "drain", lock_wait, run)
    if output == "text":
        _out(
            f"{node} is drained on every front end; test it privately, then: "
            f"{_restore_hint(inventory, node)}"
        )


@app.command()
def restore(
    inventory: Inventory,
    node: Annotated[str, typer.Argument(help="Backend server name.")],
    output: OutputFormat = "text",
    lock_wait: LockWait = 0.0,
) -> None:
    """Put a node back on every front end and wait until each reports it up."""
    from clusterctl import rollout as ro

    emit = _emitter(_output(output))
    _by_hand(inventory, node, "restore", lock_wait, lambda c: ro.restore(c, node, emit))
    if output == "text":
        _out(f"{node} is back in service on every front end")


@app.command()
def status(inventory: Inventory, output: OutputFormat = "text") -> None:
    """Every server's state and current sessions as each front end sees it."""
    import json
    from dataclasses import asdict

    from clusterctl import rollout as ro
    from clusterctl.execute import admin
    from clusterctl.model import load
    from clusterctl.ui import console, print_views

    fmt = _output(output)
    inv = load(inventory)
    with ro.open_cluster(inv) as cluster:
        views = [
            v
            for chunk in cluster.each_frontend(lambda fe, r: admin.views(r, inv, fe))
            for v in chunk
        ]
        try:
            note = ro.interrupted(inv, ro.load_state(cluster))
        except ClusterctlError as exc:  # the views above are still worth showing
            note = f"the rollout record cannot be read: {exc}"
    if fmt == "json":
        _out(json.dumps([asdict(v) for v in views], indent=2))
    else:
        print_views(views, console())
        if note:
            _out(note)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def verify(
    ctx: typer.Context,
    inventory: Inventory,
    limit: Limit = None,
    release: Annotated[
        str | None, typer.Option("--release", help="Release every backend must serve.")
    ] = None,
) -> None:
    """Check the real hosts with testinfra: services, ports, installed files, modes, admin access.

    Extra arguments after `--` go to pytest (e.g. -- -x -k haproxy).
    """
    from clusterctl.model import load
    from clusterctl.verify import run_verify

    inv = load(inventory)
    hosts = _frontend_names(inv) + sorted({s.name for p in inv.pools for s in p.servers})
    rc = run_verify(inventory, _limit(limit, hosts), list(ctx.args), release=release)
    if rc:
        raise typer.Exit(rc)


lock_app = typer.Typer(help="Show or break the cluster lock.")
app.add_typer(lock_app, name="lock")


@lock_app.command("show")
def lock_show(inventory: Inventory) -> None:
    """Show every lock on the cluster's hosts: holder, command, id, hosts, lease, staleness.

    A lock dir whose record cannot be read counts as held; the line says how to break it.
    """
    from clusterctl.execute.runner import show_lock
    from clusterctl.model import load

    for line in show_lock(load(inventory)):
        _out(line)


@lock_app.command("break")
def lock_break(
    inventory: Inventory,
    lock_id: Annotated[
        str | None,
        typer.Argument(
            help="The lock's id, as `clusterctl lock show` prints it.", show_default=False
        ),
    ] = None,
    no_record: Annotated[
        bool,
        typer.Option(
            "--no-record",
            help="Break a lock that has no readable record (a lock dir left by a full disk, "
            "say), instead of one named by its id.",
        ),
    ] = False,
) -> None:
    """Remove a stale cluster lock from every host that has it: the one with this id (see
    `clusterctl lock show`), or with --no-record the lock dirs that have no readable record.

    A lock whose holder's process is gone (same machine), or whose lease ran out, needs no
    break: the next command takes it over and says so.
    """
    from clusterctl.execute.runner import break_lock
    from clusterctl.model import load

    if (lock_id is None) == (not no_record):
        raise ClusterctlError(
            "lock break needs the lock's id (see: clusterctl lock show) or --no-record, not both"
            if lock_id
            else "lock break needs the lock's id (see: clusterctl lock show) or --no-record"
        )
    for line in break_lock(load(inventory), lock_id):
        _out(line)


LabName = Annotated[str, typer.Argument(help="Lab name; keys every namespace, address and path.")]


@lab_app.command("up")
def lab_up(
    name: LabName = "lab",
    backends: Annotated[int, typer.Option("--backends", min=0, help="Backend hosts.")] = 3,
    frontends: Annotated[
        str, typer.Option("--frontends", help="Front-end kinds, comma-separated; may repeat.")
    ] = "haproxy,nginx,apache",
    output: OutputFormat = "text",
) -> None:
    """Build the local lab (idempotent): hosts in network namespaces with real sshd and servers."""
    from clusterctl import lab

    fmt = _output(output)
    kinds = [k.strip() for k in frontends.split(",") if k.strip()]
    info = lab.up(name, backends=backends, frontends=kinds)
    if fmt == "json":
        _out(info.to_json())
        return
    state = "already running" if info.already_running else "up"
    _out(f"lab {info.name!r} {state} on {info.subnet}")
    for h in info.hosts:
        _out(f"  {h.name:<6} {h.role:<9} {h.kind:<8} {h.address:<16} {h.url}")
    _out(f"inventory: {info.inventory_path}")
    _out(
        f"ssh: ssh -i {info.ssh_key_path} -o UserKnownHostsFile={info.known_hosts_path} root@ADDRESS"
    )
    _out(f"tear down: clusterctl lab down {info.name}")


@lab_app.command("down")
def lab_down(name: LabName = "lab") -> None:
    """Remove the lab: every namespace, link, process and file it made."""
    from clusterctl import lab

    lab.down(name)
    _out(f"lab {name!r} is down")


@lab_app.command("status")
def lab_status(name: LabName = "lab", output: OutputFormat = "text") -> None:
    """Each lab host and whether its SSH and service answer."""
    import json

    from clusterctl import lab

    fmt = _output(output)
    hosts = lab.status(name)
    if fmt == "json":
        _out(json.dumps([h.to_dict() for h in hosts], indent=2))
    else:
        for h in hosts:
            _out(
                f"{h.name:<6} {h.role:<9} {h.kind:<8} {h.address:<16} "
                f"ssh {'up' if h.ssh else 'DOWN'}  service {'up' if h.service else 'DOWN'}"
                f"{'  ' + h.detail if h.detail else ''}"
            )
    if not all(h.ok for h in hosts):
        raise typer.Exit(1)


@lab_app.command("ssh", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def lab_ssh(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="Lab host name (lb1, be2, ...).")],
    name: Annotated[str, typer.Option("--lab", help="Lab name.")] = "lab",
) -> None:
    """Open a shell on a lab host (or run the command after --), host key checked strictly."""
    import os

    from clusterctl import lab

    argv = lab.info(name).ssh_argv(host, *ctx.args)
    os.execvp(argv[0], argv)  # noqa: S606 - an argv list, no shell: ssh takes over the terminal


@lab_app.command("load")
def lab_load(
    name: LabName = "lab",
    duration: Annotated[float, typer.Option("--duration", min=1, max=600, help="Seconds.")] = 20,
    clients: Annotated[int, typer.Option("--clients", min=1, max=64, help="Per front end.")] = 4,
    keepalive: Annotated[bool, typer.Option("--keepalive/--no-keepalive")] = True,
) -> None:
    """Send bounded steady traffic (GETs and POSTs) through every lab front end; count failures."""
    from clusterctl import lab
    from clusterctl.loadgen import load_all

    urls = {h.name: h.url for h in lab.info(name).frontends}
    reports = load_all(urls, clients=clients, duration=duration, keepalive=keepalive)
    for host, report in reports.items():
        _out(f"{host}: {report.summary()}")
    failed = sum(r.failed for r in reports.values())
    if failed:
        raise ClusterctlError(f"{failed} failed request(s) through the lab's front ends")


def main() -> None:
    """Exit 0 on success, 1 on any error (usage errors included), 2 only for "changes pending"
    under `plan --detailed-exitcode`: click's own usage errors exit 2, which CI would read as
    pending changes, so click runs non-standalone and its errors are reported here."""
    # typer vendors its own click; its exception classes are only importable from there.
    from typer._click import exceptions as click

    try:
        code = app(standalone_mode=False)
    except InventoryError as exc:
        _err(str(exc))  # FILE:LINE:COL: message, one line per problem
        sys.exit(1)
    except ClusterctlError as exc:
        _err(f"error: {exc}")
        sys.exit(1)
    except click.NoArgsIsHelpError as exc:
        _err(exc.format_message())
        sys.exit(1)
    except click.UsageError as exc:
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        _err(f"error: {exc.format_message()}{hint}")
        sys.exit(1)
    except click.ClickException as exc:
        _err(f"error: {exc.format_message()}")
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        _err("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
