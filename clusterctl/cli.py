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


def _limit(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


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
    the_plan = make_plan(inv, _limit(limit), forks)
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
    from clusterctl.execute.runner import cluster_lock, execute_plan, make_plan
    from clusterctl.model import load
    from clusterctl.ui import console, print_plan, print_results

    inv = load(inventory)
    out = console()
    if not yes and not sys.stdin.isatty():
        raise ClusterctlError("apply needs confirmation: run it on a terminal or pass --yes")
    with cluster_lock(inv, "apply", lock_wait):
        the_plan = make_plan(inv, _limit(limit), forks)
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
            + "; ".join(f"{r.host}: {r.message}" for r in bad)
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
        step(cluster)


@app.command()
def drain(
    inventory: Inventory,
    node: Annotated[str, typer.Argument(help="Backend server name.")],
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for sessions.")] = 60,
    output: OutputFormat = "text",
    lock_wait: LockWait = 0.0,
) -> None:
    """Take a node out on every front end and wait until its sessions are gone."""
    from clusterctl import rollout as ro

    emit = _emitter(_output(output))
    _by_hand(inventory, node, "drain", lock_wait, lambda c: ro.drain(c, node, timeout, False, emit))
    if output == "text":
        _out(f"{node} is drained on every front end; test it privately, then: clusterctl restore")


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
    if fmt == "json":
        _out(json.dumps([asdict(v) for v in views], indent=2))
    else:
        print_views(views, console())


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
    from clusterctl.verify import run_verify

    rc = run_verify(inventory, _limit(limit), list(ctx.args), release=release)
    if rc:
        raise typer.Exit(rc)


lock_app = typer.Typer(help="Show or break the cluster lock.")
app.add_typer(lock_app, name="lock")


@lock_app.command("show")
def lock_show(inventory: Inventory) -> None:
    """Show who holds the cluster lock, if anyone."""
    from clusterctl.execute.runner import show_lock
    from clusterctl.model import load

    inv = load(inventory)
    info = show_lock(inv)
    _out(f"lock on {inv.frontends[0].name}: {info.describe() if info else 'free'}")


@lock_app.command("break")
def lock_break(inventory: Inventory, lock_id: str) -> None:
    """Remove a stale cluster lock; needs the lock's id (see `clusterctl lock show`)."""
    from clusterctl.execute.runner import break_lock
    from clusterctl.model import load

    inv = load(inventory)
    break_lock(inv, lock_id)
    _out(f"lock {lock_id} on {inv.frontends[0].name} broken")


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
    # click handles usage errors itself (exit 2); errors a user can cause are one line, exit 1.
    try:
        app()
    except InventoryError as exc:
        _err(str(exc))  # FILE:LINE:COL: message, one line per problem
        sys.exit(1)
    except ClusterctlError as exc:
        _err(f"error: {exc}")
        sys.exit(1)
    except KeyboardInterrupt:
        _err("interrupted")
        sys.exit(130)
