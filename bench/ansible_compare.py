"""`clusterctl apply` beside `ansible-playbook` doing the same change on one lab of HAProxy front ends.

Brings up a lab (`clusterctl lab up PREFIX --frontends haproxy,...`), renders every front end's
files, and writes the equivalent playbook and inventory: `copy` with `validate=haproxy -c -f %s`,
`backup=yes` and the files' mode and owner, a reload handler, pipelining, ControlPersist,
forks = the host count, facts off, over the lab's own SSH (its key, known_hosts, strict host
keys). Ansible does less than clusterctl: no reload confirmation, probe, lock or rollback.

Each round, alternating the tools: "a change on every host" (the pool's health interval
flips, so every haproxy.cfg differs) and "no change" (the same files again). Prints the
medians of each and the ratio Ansible / clusterctl. The lab is taken down whatever happens.

Usage: sudo .venv/bin/python bench/ansible_compare.py [--hosts 20] [--rounds 5] [--prefix h10ans]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ruamel.yaml import YAML  # noqa: E402

from clusterctl import lab as labmod  # noqa: E402
from clusterctl.model import load  # noqa: E402
from clusterctl.plan import render_host  # noqa: E402

BIN = REPO / ".venv" / "bin"
CLUSTERCTL = os.environ.get("CLUSTERCTL_BIN") or str(BIN / "clusterctl")
PLAYBOOK = """- hosts: lb
  gather_facts: false
  tasks:
    - name: config files
      ansible.builtin.copy:
        src: "{{ render_dir }}/{{ inventory_hostname }}{{ item.path }}"
        dest: "{{ item.path }}"
        mode: "{{ item.mode }}"
        owner: "{{ item.owner }}"
        group: "{{ item.group }}"
        backup: true
        validate: "{{ item.validate | default(omit) }}"
      loop: "{{ files }}"
      notify: reload haproxy
  handlers:
    - name: reload haproxy
      ansible.builtin.command: /srv/lab/bin/lab-service haproxy reload
"""


def sh(argv: list[str], timeout: float = 900) -> tuple[int, str, float]:
    started = time.perf_counter()
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "ANSIBLE_NOCOLOR": "1"},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - started


def write_inventory(info: labmod.LabInfo, path: Path, interval: str) -> None:
    """The lab's inventory with each front end's `start`, and the health interval given."""
    data: dict[str, Any] = YAML(typ="safe").load(info.inventory_path.read_text())
    for fe in data["frontends"]:
        fe["start"] = ["/srv/lab/bin/lab-service", fe["kind"], "start"]
    data["pools"][0].setdefault("health", {})["interval"] = interval
    yaml = YAML()
    yaml.default_flow_style = False
    with path.open("w") as fh:
        yaml.dump(data, fh)


def render(inventory: Path, out: Path) -> dict[str, list[dict[str, str]]]:
    """Every front end's files as out/<host>/<path>; each host's file list for the playbook."""
    inv = load(str(inventory))
    files: dict[str, list[dict[str, str]]] = {}
    for fe in inv.frontends:
        rows = []
        for path, f in sorted(render_host(inv, fe).live.items()):
            local = out / fe.name / path.lstrip("/")
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(f.content)
            row = {"path": path, "mode": f"0{f.mode:o}", "owner": f.owner, "group": f.group}
            if path.endswith("/haproxy.cfg"):
                row["validate"] = "haproxy -c -f %s"
            rows.append(row)
        files[fe.name] = rows
    return files


def write_ansible(info: labmod.LabInfo, work: Path, forks: int) -> Path:
    """ansible.cfg, hosts.ini and playbook.yml in work/; returns ansible.cfg's path."""
    ssh_opts = [
        "-F /dev/null",
        "-o StrictHostKeyChecking=yes",
        f"-o UserKnownHostsFile={info.known_hosts_path}",
        "-o IdentitiesOnly=yes",
        "-o ConnectTimeout=5",
    ]
    lines = ["[lb]"]
    for h in info.frontends:
        lines.append(
            f"{h.name} ansible_host={h.address} ansible_port={h.ssh_port} ansible_user=root"
        )
    lines += [
        "",
        "[lb:vars]",
        f"ansible_ssh_private_key_file={info.ssh_key_path}",
        f"ansible_ssh_common_args={shlex.quote(' '.join(ssh_opts))}",
        "ansible_python_interpreter=/usr/bin/python3",
    ]
    (work / "hosts.ini").write_text("\n".join(lines) + "\n")
    (work / "playbook.yml").write_text(PLAYBOOK)
    cp = work / "cp"
    cp.mkdir(mode=0o700, exist_ok=True)
    cfg = work / "ansible.cfg"
    cfg.write_text(
        "[defaults]\n"
        f"inventory = {work / 'hosts.ini'}\n"
        f"forks = {forks}\n"
        "gathering = explicit\n"
        "host_key_checking = True\n"
        "retry_files_enabled = False\n"
        f"local_tmp = {work / 'tmp'}\n"
        "[ssh_connection]\n"
        "pipelining = True\n"
        "ssh_args = -o ControlMaster=auto -o ControlPersist=120s\n"
        f"control_path_dir = {cp}\n"
    )
    return cfg


def ansible(cfg: Path, work: Path, render_dir: Path) -> tuple[float, str]:
    os.environ["ANSIBLE_CONFIG"] = str(cfg)
    rc, out, secs = sh(
        [
            str(BIN / "ansible-playbook"),
            str(work / "playbook.yml"),
            "-e",
            f"render_dir={render_dir}",
        ]
    )
    if rc != 0:
        raise SystemExit(f"ansible-playbook failed:\n{out[-3000:]}")
    recap = [ln for ln in out.splitlines() if "changed=" in ln]
    changed = sum(int(ln.split("changed=")[1].split()[0]) > 0 for ln in recap)
    return secs, f"{changed} changed"


def clusterctl(inventory: Path, forks: int) -> tuple[float, str]:
    rc, out, secs = sh([CLUSTERCTL, "apply", "-i", str(inventory), "--yes", "--forks", str(forks)])
    if rc != 0:
        raise SystemExit(f"clusterctl apply failed:\n{out[-3000:]}")
    return secs, "nothing to do" if "nothing to do" in out else "applied"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=20, help="HAProxy front ends")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prefix", default="h10ans", help="the lab's name")
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/ansible_compare.py builds a lab: run it as root", file=sys.stderr)
        return 2
    work = Path(f"/tmp/clusterctl-{args.prefix}-ansible")
    work.mkdir(parents=True, exist_ok=True)
    name = args.prefix
    try:
        rc, out, _ = sh(
            [
                CLUSTERCTL,
                "lab",
                "up",
                name,
                "--backends",
                "2",
                "--output",
                "json",
                "--frontends",
                ",".join(["haproxy"] * args.hosts),
            ]
        )
        if rc != 0:
            raise SystemExit(f"lab up {name} failed: {out}")
        info = labmod.LabInfo.from_dict(json.loads(out[out.index("{") :]))
        cfg = write_ansible(info, work, args.hosts)
        inv = {i: work / f"inventory-{i}.yaml" for i in ("2s", "3s")}
        files: dict[str, dict[str, Any]] = {}
        for interval, path in inv.items():
            write_inventory(info, path, interval)
            files[interval] = render(path, work / f"render-{interval}")
        # Ansible's per-host file list (host_vars beside hosts.ini), the same in both states.
        (work / "host_vars").mkdir(exist_ok=True)
        for host, rows in files["2s"].items():
            (work / "host_vars" / f"{host}.json").write_text(json.dumps({"files": rows}))
        clusterctl(inv["2s"], args.hosts)  # the lab's first config: both start from state 2s
        times: dict[str, list[float]] = {
            "cc change": [],
            "an change": [],
            "cc none": [],
            "an none": [],
        }
        notes: list[str] = []
        for r in range(args.rounds):
            # clusterctl changes 2s -> 3s, Ansible 3s -> 2s; then both again with nothing to do.
            secs, said = clusterctl(inv["3s"], args.hosts)
            times["cc change"].append(secs)
            notes += [] if said == "applied" else [f"round {r}: clusterctl change said {said}"]
            secs, said = ansible(cfg, work, work / "render-2s")
            times["an change"].append(secs)
            notes += [] if said == f"{args.hosts} changed" else [f"round {r}: ansible {said}"]
            pair = [("an", lambda: ansible(cfg, work, work / "render-2s"))]
            pair.append(("cc", lambda: clusterctl(inv["2s"], args.hosts)))
            for tool, fn in pair if r % 2 == 0 else reversed(pair):
                secs, said = fn()
                times[f"{tool} none"].append(secs)
                if said not in ("nothing to do", "0 changed"):
                    notes.append(f"round {r}: {tool} no-change run said {said}")
            print(
                f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()),
                file=sys.stderr,
            )
        med = {k: statistics.median(v) for k, v in times.items()}
        load = os.getloadavg()[0]
        print(
            f"\n{args.hosts} HAProxy front ends, {args.rounds} alternating rounds, medians; "
            f"{os.cpu_count()} CPUs, load {load:.1f}"
        )
        print(f"{'':<22} {'clusterctl':>10} {'ansible':>9} {'ratio':>7}")
        for what, key in (("a change on every host", "change"), ("no change", "none")):
            cc, an = med[f"cc {key}"], med[f"an {key}"]
            print(f"{what:<22} {cc:>9.2f}s {an:>8.2f}s {an / cc:>6.1f}x")
        for note in notes:
            print(f"note: {note}")
        return 1 if notes else 0
    finally:
        if not args.keep:
            sh([CLUSTERCTL, "lab", "down", name])


if __name__ == "__main__":
    sys.exit(main())
