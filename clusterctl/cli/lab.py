"""lab up, down, status, ssh, load: the local network-namespace cluster."""

from __future__ import annotations

from typing import Annotated

import typer

from clusterctl.cli.base import (
    OutputFormat,
    _out,
    _output,
    app,
)
from clusterctl.errors import ClusterctlError
from clusterctl.ui import plural

lab_app = typer.Typer(help="A local cluster of network-namespace hosts to rehearse on.")
app.add_typer(lab_app, name="lab")


LabName = Annotated[str, typer.Argument(help="Lab name; keys every namespace, address and path.")]


@lab_app.command("up")
def lab_up(
    name: LabName = "lab",
    backends: Annotated[int, typer.Option("--backends", min=0, help="Backend hosts.")] = 3,
    frontends: Annotated[
        str, typer.Option("--frontends", help="Front-end kinds, comma-separated; may repeat.")
    ] = "haproxy,nginx,apache",
    output: OutputFormat = "text",
    vip: Annotated[
        bool, typer.Option("--vip", help="The front ends share a virtual address (keepalived).")
    ] = False,
) -> None:
    """Build the local lab (idempotent): hosts in network namespaces with real sshd and servers."""
    from clusterctl import lab

    fmt = _output(output)
    kinds = [k.strip() for k in frontends.split(",") if k.strip()]
    info = lab.up(name, backends=backends, frontends=kinds, vip=vip)
    if fmt == "json":
        _out(info.to_json())
        return
    state = "already running" if info.already_running else "up"
    _out(f"lab {info.name!r} {state} on {info.subnet}")
    for h in info.hosts:
        _out(f"  {h.name:<6} {h.role:<9} {h.kind:<8} {h.address:<16} {h.url}")
    for g in info.vrrp:
        _out(f"  vrrp {g['name']}: {g['address']} on {', '.join(g['members'])}")
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


def remote_command(args: list[str]) -> list[str]:
    """The words ssh sends for `-- CMD ARGS...`: each quoted, so the host's shell, which ssh
    hands the joined line to, gets back exactly these arguments (`-- printf '%s\\n' 'a b'`)."""
    import shlex

    return [shlex.quote(a) for a in args]


@lab_app.command("ssh", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def lab_ssh(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Lab name, as `lab up NAME` made it.")],
    host: Annotated[str, typer.Argument(help="Lab host name (lb1, be2, ...).")],
) -> None:
    """Open a shell on a lab host, or run the command after -- with its arguments intact:
    `clusterctl lab ssh lab lb1 -- cat /etc/haproxy/haproxy.cfg`. Host key checked strictly."""
    import os

    from clusterctl import lab

    argv = lab.info(name).ssh_argv(host, *remote_command(list(ctx.args)))
    os.execvp(argv[0], argv)  # noqa: S606 - an argv list, no shell: ssh takes over the terminal


def start_url(url: str, https: bool) -> str:
    """A lab URL, or its https:// twin on the default port."""
    if not https:
        return url
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"https://{f'[{host}]' if ':' in host else host}{parts.path or '/'}"


@lab_app.command("load")
def lab_load(
    name: LabName = "lab",
    duration: Annotated[float, typer.Option("--duration", min=1, max=600, help="Seconds.")] = 20,
    clients: Annotated[int, typer.Option("--clients", min=1, max=64, help="Per front end.")] = 4,
    keepalive: Annotated[bool, typer.Option("--keepalive/--no-keepalive")] = True,
    vip: Annotated[
        bool, typer.Option("--vip", help="Through the lab's virtual address, not each front end.")
    ] = False,
    https: Annotated[
        bool, typer.Option("--https", help="Start on https://ADDRESS/ (port 443), not http://.")
    ] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow/--no-follow",
            help="Follow redirects (a redirect: true service's http -> https) and measure "
            "where they lead; --no-follow counts the redirects themselves.",
        ),
    ] = True,
) -> None:
    """Send bounded steady traffic (GETs and POSTs) through every lab front end; count failures.

    TLS is spoken but its certificate not verified: the lab's hosts are reached by address.
    """
    from clusterctl import lab
    from clusterctl.lab.vrrp import vip as lab_vip
    from clusterctl.loadgen import load_all

    info = lab.info(name)
    urls = {h.name: h.url for h in info.frontends}
    if vip:
        urls = {"vip": f"http://{lab_vip(info)}/"}
    urls = {n: start_url(u, https) for n, u in urls.items()}
    reports = load_all(urls, clients=clients, duration=duration, keepalive=keepalive, follow=follow)
    for host, report in reports.items():
        _out(f"{host}: {report.summary()}")
    failed = sum(r.failed for r in reports.values())
    if failed:
        raise ClusterctlError(f"{plural(failed, 'failed request')} through the lab's front ends")
