"""Reload a front end and prove it happened, or say why not in the server's own words, fast.

A reload is confirmed by new worker processes under a live master, never by an exit status:
`nginx -s reload`, `kill -USR2` and systemctl return 0 whatever the server then does. A reload
that fails is told apart from a slow one by what the server writes: HAProxy's master prints
"Loading failure!" (its ALERTs before it) on its standard error, nginx an `[emerg]` in its
error log; Apache's graceful restart exits. Each poll is one remote command that returns the
processes and whatever the server's log gained since the reload was asked for.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from clusterctl import progress as waits
from clusterctl.drivers import DRIVERS, driver_for
from clusterctl.execute.chain import Part, sh_many
from clusterctl.execute.ssh import Remote, quote
from clusterctl.execute.steps import PATH, StepFailed, check
from clusterctl.facts import PROCS_SH, parse_socket
from clusterctl.model.schema import Frontend

# Each driver names where its server writes what goes wrong at a reload (error_log; "-" is the
# master's own standard error, wherever it points: a log file, or the journal of systemd's -Ws
# unit, read with journalctl), the line that announces a failed reload (the server keeps its
# old workers) and how long the log must stay quiet after it before the failure is final.
_WORDS_RX = re.compile(r"ALERT|\[emerg\]|\[alert\]|:emerg\]|:alert\]|\[crit\]|:crit\]|\[error\]")

# $1 pid file; $2 log: a file, "-" (the master's stderr) or "journal:PID:SINCE" as an earlier
# call named it; $3 offset in the log or "-". The master's pid, its children (the workers),
# the log's size and name, and what it gained since the offset. With $5 > 0 the host itself
# polls first, every 100 ms up to $5 times, until something changes: a worker that is not one of
# $4 (the workers before the reload), the master gone, or the log file grown past $6 bytes with
# a line matching $7 (an alert): one command then covers what would take several round trips. A poll forks only `stat` (a
# log file's size) and `sleep`: the pid file and the master's children are read by builtins.
_WATCH = (
    ": reload watch\n"
    + PROCS_SH
    + r"""log=$2
pid_in "$1"
i=0
seen=$6
while [ "$i" -lt "${5:-0}" ]; do
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kids_of "$pid"
    for c in $kids; do
      case " $4 " in *" $c "*) ;; *) i=$5 ;; esac
    done
  elif [ -n "$4" ]; then
    break
  fi
  case $log in /*)
    size=$(stat -c %s -- "$log" 2>/dev/null)
    if [ "$size" != "$seen" ]; then
      # What the log gained ends the wait only if it has a word worth reading now (a
      # reload's own notice does not): the new workers are what is waited for.
      case $seen$size in *[!0-9]*) break ;; esac
      [ "$size" -gt "$seen" ] || break
      tail -c +$((seen + 1)) -- "$log" | head -c 16384 | grep -qE -- "$7" && break
      seen=$size
    fi ;;
  esac
  [ "$i" -lt "$5" ] || break
  sleep 0.1
  i=$((i + 1))
  pid_in "$1"
done
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  printf 'MASTER %s\n' "$pid"
  kids_of "$pid"
  for c in $kids; do printf 'CHILD %s\n' "$c"; done
  if [ "$log" = - ]; then
    log=$(readlink -- "/proc/$pid/fd/2" 2>/dev/null)
    case $log in
    socket:*) command -v journalctl >/dev/null 2>&1 && log="journal:$pid:$(date +%s)" ;;
    esac
  fi
fi
case $log in
journal:*)
  j=${log#journal:}
  out=$(journalctl -q -o cat "_PID=${j%%:*}" --since "@${j#*:}" 2>/dev/null | head -c 65536)
  printf 'LOG %s %s\n' "$(printf '%s' "$out" | wc -c)" "$log"
  if [ "$3" != - ]; then
    printf '%s' "$out" | tail -c +$(($3 + 1)) | head -c 16384 | sed 's/^/TEXT /'
  fi ;;
/*)
  if [ -f "$log" ]; then
    size=$(stat -c %s -- "$log")
    printf 'LOG %s %s\n' "$size" "$log"
    if [ "$3" != - ] && [ "$size" -gt "$3" ]; then
      tail -c +$(($3 + 1)) -- "$log" | head -c 16384 | sed 's/^/TEXT /'
    fi
  fi ;;
esac
"""
)


# $1 pid file, $2 the workers before the reload; then the driver's after-reload script with its
# own arguments: run only if the master has a worker that is not one of $2 (the reload is
# confirmed), else exit NOT_NEW and leave it to the caller, who runs it once it is.
NOT_NEW = 75
_IF_NEW_WORKERS = (
    PROCS_SH
    + r"""pid_in "$1"; old=" $2 "; shift 2
new=
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  kids_of "$pid"
  for c in $kids; do
    case $old in *" $c "*) ;; *) new=1 ;; esac
  done
fi
"""
    + f'[ -n "$new" ] || exit {NOT_NEW}\n'
)


@dataclass
class Watch:
    master: int | None = None
    children: set[int] = field(default_factory=set)
    log: str = "-"
    size: int | None = None
    text: list[str] = field(default_factory=list)


# How many 100 ms polls one watch command makes on the host while it waits for new workers
# (two seconds: twenty hosts reloading at once on a small machine take more than one, and a
# failure ends the wait at once; each poll costs two short processes: polling faster costs
# more CPU than it saves waiting).
HOST_POLLS = 20


def watch_part(
    fe: Frontend, log: str = "-", offset: int | None = None, until: Watch | None = None
) -> Part:
    """The watch command (see _WATCH): with `until` (the previous look), the host waits first,
    a little, for something to differ from it."""
    pid_file = driver_for(fe.kind).paths(fe).pid_file
    wait = (
        ()
        if until is None
        else (
            " ".join(map(str, sorted(until.children))) if until.master is not None else "",
            str(HOST_POLLS),
            "-" if until.size is None else str(until.size),
            _WORDS_RX.pattern,
        )
    )
    args = (pid_file, log, "-" if offset is None else str(offset), *wait)
    return Part(_WATCH, args, stop=False)


def parse_watch(out: str, log: str) -> Watch:
    w = Watch(log=log)
    for line in out.splitlines():
        tag, _, value = line.partition(" ")
        if tag == "MASTER" and value.isdigit():
            w.master = int(value)
        elif tag == "CHILD" and value.isdigit():
            w.children.add(int(value))
        elif tag == "LOG":
            size, _, path = value.partition(" ")
            if size.isdigit():
                w.size, w.log = int(size), path
        elif tag == "TEXT":
            w.text.append(value)
    return w


def watch(
    remote: Remote,
    fe: Frontend,
    log: str = "-",
    offset: int | None = None,
    until: Watch | None = None,
) -> Watch:
    """The server's state now; with `until`, once something differs from it (or a second)."""
    part = watch_part(fe, log, offset, until)
    return parse_watch(remote.sh(part.script, *part.args, step="reload").out, log)


def server_pids(remote: Remote, fe: Frontend) -> tuple[int | None, set[int]]:
    w = watch(remote, fe, "")
    return w.master, w.children


# Alerts HAProxy prints at every reload that do not stop it (a directive given twice, a logger
# that is not there): they would crowd out the one that matters.
_NOISE_RX = re.compile(r"Continuing\.|failed in logger")
_STAMP_RX = re.compile(r"^(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d |\[[A-Z][a-z]{2} [^]]*\d{4}\] )")


def _log_words(lines: list[str]) -> str:
    keep = [ln.strip() for ln in lines if _WORDS_RX.search(ln) and not _NOISE_RX.search(ln)]
    keep = keep or [ln.strip() for ln in lines if not _NOISE_RX.search(ln)]
    # nginx repeats its bind alert at each of its retries: once is enough.
    unique = dict.fromkeys(_STAMP_RX.sub("", ln).strip() for ln in keep if ln)
    return " | ".join(unique)[-800:]


_SERVER_PROCESSES = frozenset(p for d in DRIVERS.values() for p in d.processes)


def port_conflicts(remote: Remote, ports: frozenset[int]) -> str:
    """Listening sockets on `ports` held by something other than a web server, in words."""
    if not ports:
        return ""
    res = remote.sh(PATH + "ss -Htlnp 2>/dev/null", step="reload")
    found: list[str] = []
    for line in res.out.splitlines():
        sock = parse_socket(line.split()[3:])
        if sock is None or sock.port not in ports:
            continue
        others = sorted({f"{n} (pid {p})" for n, p in sock.users if n not in _SERVER_PROCESSES})
        if others:
            found.append(f"{sock.address}:{sock.port} is already in use by {', '.join(others)}")
    return "; ".join(sorted(set(found)))


def _confirm_in_place(
    remote: Remote, confirm: tuple[str, list[str]], argv: tuple[str, ...], timeout: float
) -> None:
    """Poll the driver's confirmation script: 0 confirmed, 3 not yet, anything else failed."""
    started = time.monotonic()
    while True:
        res = remote.sh(PATH + confirm[0], *confirm[1], step="reload")
        if res.ok:
            return
        waited = time.monotonic() - started
        if res.rc != 3 or waited > timeout:
            raise StepFailed(
                "reload", f"not confirmed {waited:.1f} s after {quote(argv)}: {res.words()}"
            )
        time.sleep(0.1)


def reload_and_confirm(
    remote: Remote, fe: Frontend, timeout: float = 15.0, ports: frozenset[int] = frozenset()
) -> None:
    """Reload gracefully and prove it happened: new worker processes under a live master.

    `ports` are those the new config listens on: when the reload fails, another process
    holding one of them is the usual reason, and is named beside the server's own words.
    """
    driver = driver_for(fe.kind)
    before = watch(remote, fe, driver.error_log)
    log, offset = before.log, before.size
    first: Watch | None = None
    after_done = False  # the driver's after-reload script ran in the reload's own command
    started = time.monotonic()
    if before.master is None:
        argv = driver.start_argv(fe)
        check(remote.sh(PATH + 'exec "$@"', *argv, step="start"), f"start ({quote(argv)})")
    else:
        hook = driver.before_reload(fe)
        argv = driver.reload_argv(fe)
        # The hook and the reload in one command; each still fails as itself.
        parts = [Part(PATH + hook[0], tuple(hook[1]))] if hook is not None else []
        parts.append(Part(PATH + 'exec "$@"', tuple(argv)))
        at = len(parts) - 1  # the reload's own part
        confirm = driver.confirm_reload(fe)
        after = driver.after_reload(fe)
        if confirm is None:
            # The first look for new workers in the same command, right after the reload, and
            # the after-reload script if that look's workers are new.
            parts.append(watch_part(fe, log, offset, before if offset is not None else None))
            if after is not None:
                pid_file = driver.paths(fe).pid_file
                was = " ".join(map(str, sorted(before.children)))
                script = _IF_NEW_WORKERS + PATH + after[0]
                parts.append(Part(script, (pid_file, was, *after[1]), stop=False))
        done = sh_many(remote, parts, step="reload")
        if hook is not None:
            check(done[0], "before reload")
        check(done[min(at, len(done) - 1)], f"reload ({quote(argv)})")
        if len(done) > at + 1 and done[at + 1].ok:
            first = parse_watch(done[at + 1].out, log)
        if len(done) > at + 2 and done[at + 2].rc != NOT_NEW:
            check(done[at + 2], "after reload")
            after_done = True
        if confirm is not None:  # a reload in place (keepalived): no new workers to wait for
            _confirm_in_place(remote, confirm, argv, timeout)
            hook = driver.after_reload(fe)
            if hook is not None:
                check(remote.sh(PATH + hook[0], *hook[1], step="reload"), "after reload")
            return
    noted = time.monotonic()
    gone_since: float | None = None
    text: list[str] = []
    conflicts_checked = before.size is not None  # the server's words are readable
    failed_size: int | None = None
    failed_since = 0.0
    failed_rx = driver.reload_failed_rx

    def failed(why: str) -> StepFailed:
        words = [w for w in (port_conflicts(remote, ports), _log_words(text)) if w]
        waited = time.monotonic() - started
        return StepFailed(
            "reload",
            f"{why} {waited:.1f} s after {quote(argv)}{': ' if words else ''}{'; '.join(words)}",
        )

    now = before
    while True:
        # Each look after the reload waits on the host for the workers to change (the first
        # came with the reload's own command); one that came back at once did not wait.
        if first is not None:
            now, first, host_waited = first, None, True
        else:
            asked = time.monotonic()
            now = watch(remote, fe, log, offset, until=now if offset is not None else None)
            host_waited = time.monotonic() - asked >= 0.05
        if offset is None and now.size is not None:
            # A log first seen now (a fresh master's): what it held before is older runs'
            # history, which may hold an old failure; only what follows counts.
            log, offset = now.log, now.size
            continue
        text = now.text or text
        if (
            now.master is not None
            and now.children
            and (before.master is None or now.children - before.children)
        ):
            hook = None if after_done else driver.after_reload(fe)
            if hook is not None:
                check(remote.sh(PATH + hook[0], *hook[1], step="reload"), "after reload")
            return
        # The server said the new config did not load: no new workers are coming. It may not
        # be done (nginx retries a bind five times, HAProxy resumes its old workers after its
        # alert): the words are complete, and the next reload is heard, once the log is quiet.
        if failed_rx is not None and any(failed_rx.search(ln) for ln in now.text):
            if now.size != failed_size:
                failed_size, failed_since = now.size, time.monotonic()
            elif time.monotonic() - failed_since > driver.reload_quiet:
                raise failed("the new configuration did not load")
        # A server that was running and is gone did not reload, it died (Apache exits when a
        # graceful restart cannot bind or load a certificate): say so now, so the rollback
        # starts it again at once. A few polls of grace cover a pid file being rewritten.
        if before.master is not None and now.master is None:
            gone_since = gone_since or time.monotonic()
            if time.monotonic() - gone_since > 0.3:
                raise failed("the server exited")
        else:
            gone_since = None
        # Where the server's words cannot be read (a journal), another process visibly holding
        # one of the new ports still ends the wait early: HAProxy and nginx keep their old
        # workers when they cannot bind.
        if not conflicts_checked and now.master is not None and time.monotonic() - started > 2:
            conflicts_checked = True
            if port_conflicts(remote, ports):
                raise failed("no new workers started")
        if time.monotonic() - started > timeout:
            raise failed(
                "the server is not running" if now.master is None else "no new workers started"
            )
        if waits.reload_wait is not None and time.monotonic() - noted >= waits.EVERY:
            noted = time.monotonic()
            waited = f"{noted - started:.0f}s of {timeout:g}s"
            waits.reload_wait(fe.name, f"waiting for new {fe.kind} workers ({waited})")
        if not host_waited:  # the master is gone, or the log grew: no poll on the host
            time.sleep(0.05)
