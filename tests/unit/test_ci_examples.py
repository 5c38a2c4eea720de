"""examples/ci: both files parse, each shell step parses, and the jobs do what the docs say.

Merge/pull requests run `clusterctl plan --detailed-exitcode` (exit 2, changes pending, is not a
failure); the main branch runs `apply --yes` then `rollout --version <commit> --output json`;
the SSH key and known_hosts come from CI secrets, and host keys are never left unchecked.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from clusterctl.cli import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ci"


def load(name: str) -> dict[str, Any]:
    # YAML 1.2 (ruamel): GitHub's `on:` stays a string key, not the boolean YAML 1.1 makes of it.
    doc = YAML(typ="safe", pure=True).load((EXAMPLES / name).read_text())
    assert isinstance(doc, dict)
    return doc


def commands(script: str | list[str]) -> list[str]:
    """clusterctl command lines of a script, continuation lines joined."""
    text = script if isinstance(script, str) else "\n".join(script)
    text = text.replace("\\\n", " ")
    return [
        " ".join(ln.split()) for ln in text.splitlines() if ln.strip().startswith("clusterctl ")
    ]


def bash_parses(script: str) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    res = subprocess.run([bash, "-n"], input=script, capture_output=True, text=True, check=False)
    assert res.returncode == 0, f"{res.stderr}\n{script}"


def cli_flags(command: str) -> set[str]:
    """Every option the real clusterctl subcommand takes (so the examples cannot drift)."""
    import typer.main

    group = typer.main.get_command(app)
    sub = group.commands[command]  # type: ignore[attr-defined]
    return {opt for p in sub.params for opt in p.opts}


def check_flags(line: str) -> None:
    words = line.split()
    known = cli_flags(words[1])
    for word in words[2:]:
        if word.startswith("--"):
            assert word.split("=", 1)[0] in known, f"{line}: clusterctl {words[1]} has no {word}"


# ---------------------------------------------------------------------------- GitHub


def github_jobs() -> dict[str, dict[str, Any]]:
    doc = load("github-actions.yml")
    assert set(doc["on"]) == {"pull_request", "push"}
    assert doc["on"]["push"]["branches"] == ["main"]
    assert doc["defaults"]["run"]["shell"] == "bash"  # -eo pipefail
    jobs = doc["jobs"]
    assert isinstance(jobs, dict)
    return jobs


def github_runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def github_job(condition: str) -> dict[str, Any]:
    (job,) = [j for j in github_jobs().values() if condition in j.get("if", "")]
    return job


def test_github_pull_requests_plan_with_detailed_exitcode() -> None:
    job = github_job("pull_request")
    lines = [c for run in github_runs(job) for c in commands(run)]
    plans = [c for c in lines if c.startswith("clusterctl plan ")]
    assert len(plans) == 1 and "--detailed-exitcode" in plans[0]
    assert not any(c.startswith(("clusterctl apply", "clusterctl rollout")) for c in lines)
    plan_step = next(r for r in github_runs(job) if "clusterctl plan" in r)
    assert "2)" in plan_step and 'exit "$rc"' in plan_step  # 2 passes, 1 fails
    assert "GITHUB_STEP_SUMMARY" in plan_step  # the diff, shown


def test_github_main_applies_then_rolls_out_the_commit() -> None:
    job = github_job("refs/heads/main")
    assert "github.event_name == 'push'" in job["if"]
    lines = [c for run in github_runs(job) for c in commands(run)]
    assert [c.split()[1] for c in lines] == ["apply", "rollout"]
    apply, rollout = lines
    assert "--yes" in apply.split()
    assert '--version "$GITHUB_SHA"' in rollout
    assert "--output json" in rollout and "--resume" in rollout
    assert job["concurrency"]["cancel-in-progress"] is False


def test_github_ssh_from_secrets_with_strict_host_keys() -> None:
    for job in github_jobs().values():
        ssh = next(s for s in job["steps"] if "known_hosts" in s.get("run", ""))
        assert ssh["env"] == {
            "SSH_KEY": "${{ secrets.CLUSTERCTL_SSH_KEY }}",
            "SSH_KNOWN_HOSTS": "${{ secrets.CLUSTERCTL_KNOWN_HOSTS }}",
        }
        assert "umask 077" in ssh["run"]
    text = (EXAMPLES / "github-actions.yml").read_text()
    assert "StrictHostKeyChecking" not in text and "ssh-keyscan >>" not in text


def test_github_run_steps_are_valid_bash_with_known_flags() -> None:
    for job in github_jobs().values():
        for run in github_runs(job):
            assert "${{" not in run  # expressions go through env, never into the script
            bash_parses(run)
            for line in commands(run):
                check_flags(line.split(">", 1)[0].split("|", 1)[0])


# ---------------------------------------------------------------------------- GitLab


def gitlab() -> dict[str, Any]:
    doc = load("gitlab-ci.yml")
    assert doc["stages"] == ["check", "deploy"]
    return doc


def gitlab_script(doc: dict[str, Any], name: str) -> list[str]:
    job = doc[name]
    base = doc[job["extends"]] if "extends" in job else {}
    return [*base.get("before_script", []), *job["script"]]


def test_gitlab_merge_requests_plan_with_detailed_exitcode() -> None:
    doc = gitlab()
    job = doc["plan"]
    assert job["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    lines = commands(job["script"])
    plans = [c for c in lines if c.startswith("clusterctl plan ")]
    assert len(plans) == 1 and "--detailed-exitcode" in plans[0]
    assert job["allow_failure"] == {"exit_codes": [2]}  # changes pending: a warning
    assert not any(c.startswith(("clusterctl apply", "clusterctl rollout")) for c in lines)


def test_gitlab_default_branch_applies_then_rolls_out_the_commit() -> None:
    doc = gitlab()
    job = doc["deploy"]
    assert job["rules"] == [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}]
    lines = commands(job["script"])
    assert [c.split()[1] for c in lines] == ["apply", "rollout"]
    apply, rollout = lines
    assert "--yes" in apply.split()
    assert '--version "$CI_COMMIT_SHA"' in rollout
    assert "--output json" in rollout and "--resume" in rollout
    assert job["resource_group"] == "production"
    assert job["artifacts"]["when"] == "always"


def test_gitlab_ssh_from_file_variables_with_strict_host_keys() -> None:
    doc = gitlab()
    before = doc[".clusterctl"]["before_script"]
    assert 'install -m 600 "$CLUSTERCTL_SSH_KEY" ~/.ssh/id_ed25519' in before
    assert 'install -m 644 "$CLUSTERCTL_KNOWN_HOSTS" ~/.ssh/known_hosts' in before
    assert "set -o pipefail" in before[0]
    text = (EXAMPLES / "gitlab-ci.yml").read_text()
    assert "StrictHostKeyChecking" not in text and "ssh-keyscan >>" not in text


def test_gitlab_scripts_are_valid_bash_with_known_flags() -> None:
    doc = gitlab()
    for name in ("plan", "deploy"):
        script = gitlab_script(doc, name)
        bash_parses("\n".join(script))
        for line in commands(script):
            check_flags(line.split(">", 1)[0].split("|", 1)[0])
