"""How fast a failed apply is refused, reported and undone, per front-end kind, under load.

On a lab of one front end of each kind: (1) a listener on an address no host has, refused by
the bind preflight (time of the whole apply, failed requests during it); (2) `--trials` times,
a port another process takes after every check, as the files are swapped, so only the reload
can fail: seconds from the reload to the report with the server's words, seconds from that
report to the old config serving again, and the requests that failed meanwhile. Prints one table. The lab is
removed at the end, whatever happens.

Usage: sudo .venv/bin/python bench/reload_failure.py [--trials 3] [--lab bench-rf]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.labfixtures import acceptance_inventory, cli, own_lab  # noqa: E402
from tests.integration.test_apply_faults import failure_of  # noqa: E402
from tests.integration.test_apply_preflight import (  # noqa: E402
    squatters_at_the_swap,
    under_load,
    with_listener,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--lab", default="bench-rf")
    args = ap.parse_args()
    rows: list[tuple[str, str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp, own_lab(args.lab, Path(tmp)) as lab:
        base = acceptance_inventory(lab.info)
        lab.write(base)
        assert cli("apply", "-i", str(lab.inventory), "--yes").rc == 0
        lab.write(with_listener(base, lab.spare_address(240), 8088))
        with under_load(lab, 30) as reports:
            started = time.monotonic()
            run = cli("apply", "-i", str(lab.inventory), "--yes")
            took = time.monotonic() - started
        for fe in lab.frontends:
            rows.append((f"{fe.name} ({fe.kind})", "bad address: refused", f"{took:.2f}", "-",
                         f"{reports[fe.name].failed}/{reports[fe.name].requests}"))  # fmt: skip
        for trial in range(args.trials):
            port = 8190 + trial
            lab.write(with_listener(base, None, port))
            with squatters_at_the_swap(lab, port), under_load(lab, 60) as reports:
                run = cli("apply", "-i", str(lab.inventory), "--yes")
            for fe in lab.frontends:
                words = failure_of(run, fe.name)
                told = re.search(r"(\d+\.\d) s after ", words)
                back = re.search(r"serving (\d+\.\d) s later", words)
                rows.append((f"{fe.name} ({fe.kind})", f"port taken at the swap #{trial + 1}",
                             told.group(1) if told else "?", back.group(1) if back else "?",
                             f"{reports[fe.name].failed}/{reports[fe.name].requests}"))  # fmt: skip
    head = ("front end", "case", "reported after s", "old config back after s", "failed/requests")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()
