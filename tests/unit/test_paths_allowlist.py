"""The paths a front end's files go to: its kind's own folders, or folders the user names under
outside_paths; never anything that runs code or grants access on the host, whatever is named."""

from __future__ import annotations

import textwrap

import pytest

from clusterctl.errors import InventoryError
from clusterctl.model import parse

BASE = """\
cluster: t
frontends:
  - {name: lb1, kind: haproxy, address: 192.0.2.10}
pools:
  - name: app
    servers:
      - {name: web1, address: 192.0.2.21, port: 8080}
services:
  - name: web
    listen: [{port: 80}]
    default_pool: app
"""


def problems(text: str) -> list[str]:
    with pytest.raises(InventoryError) as info:
        parse(textwrap.dedent(text), "inv.yaml")
    return [str(p) for p in info.value.problems]


SENSITIVE = [
    "/etc/cron.daily/x",
    "/etc/profile.d/x.sh",
    "/root/.bashrc",
    "/home/deploy/.ssh/authorized_keys",
    "/home/deploy/.bashrc",
    "/run/systemd/system/x.service",
    "/var/run/systemd/system/x.service",
    "/etc/nsswitch.conf",
    "/etc/shadow-",
    "/var/lib/clusterctl/lock",
    "/var/spool/cron/crontabs/root",
    "/etc/sudoers.d/x",
]


def paths_inv(kind: str, paths: str, outside: str = "") -> str:
    extra = f", outside_paths: [{outside}]" if outside else ""
    return BASE.replace(
        "kind: haproxy, address: 192.0.2.10}",
        f"kind: {kind}, address: 192.0.2.10, paths: {{{paths}}}{extra}}}",
    )


@pytest.mark.parametrize("path", SENSITIVE)
def test_sensitive_host_paths_are_refused_even_when_named_outside(path: str) -> None:
    out = problems(paths_inv("haproxy", f"config: {path}"))
    assert len(out) == 1 and out[0].startswith("inv.yaml:3:"), out
    out = problems(paths_inv("haproxy", f"config: {path}", outside=path))
    assert out and all("points at a system file" in p for p in out), out


def test_paths_stay_in_their_kinds_folders_unless_named_outside() -> None:
    out = problems(paths_inv("nginx", "config: /etc/haproxy/nginx.conf"))
    assert out == [
        "inv.yaml:3:67: frontends[0].paths.config: /etc/haproxy/nginx.conf is outside nginx's own "
        "folders (/etc/nginx, /run/nginx, /var/lib/nginx, /var/log/nginx, /run/nginx.pid); to use "
        "it anyway, list it or its folder under frontends[0].outside_paths"
    ]
    ok = parse(
        paths_inv(
            "haproxy",
            "config: /srv/lb/haproxy.cfg, admin_socket: /run/haproxy/a.sock",
            outside="/srv/lb",
        ),
        "inv.yaml",
    )
    assert ok.frontends[0].outside_paths == ("/srv/lb",)
    ok = parse(
        paths_inv("apache", "pid_file: /var/run/apache2/x.pid, tls_dir: /etc/apache2/ssl"),
        "inv.yaml",
    )
    assert ok.frontends[0].paths.pid_file == "/var/run/apache2/x.pid"
    # A folder's name is not a prefix of another's: /etc/haproxy2 is not /etc/haproxy.
    out = problems(paths_inv("haproxy", "config: /etc/haproxy2/haproxy.cfg"))
    assert len(out) == 1 and "outside haproxy's own folders" in out[0]


def test_each_kinds_defaults_lie_in_its_own_folders() -> None:
    from clusterctl.drivers import DRIVERS
    from clusterctl.model.pathcheck import under
    from clusterctl.model.semantics import own_paths

    for kind, driver in DRIVERS.items():
        own = own_paths(kind)
        for value in vars(driver.defaults).values():
            assert not value or under(value, own), (kind, value)
        if not driver.proxy:  # keepalived: no front end is of its kind
            continue
        # and the folders a kind's renderer makes at check time
        fe = parse(paths_inv(kind, "config: " + driver.defaults.config), "inv.yaml").frontends[0]
        for folder in driver.runtime_dirs(fe):
            assert under(folder, own) or folder == "/run", (kind, folder)
