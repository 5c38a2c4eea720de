"""What a plan does with each file, as Literal types (plan.py's FileChange.action).

The other status words live beside what they describe: plan.py's PlanStatus (a host in a plan),
execute/apply.py's Status (a host after apply), execute/lock.py's State (a lock copy),
drivers/control.py's AdminState, ViewState and Health (a server's live view) and
orchestrate/cluster.py's EventStatus (a rollout event). These are here, outside plan.py, so
that plan's JSON, saved plans and verify can name a file action without importing the planner.
"""

from __future__ import annotations

from typing import Literal

# "mode": only the mode or the owner changes, the content is the same.
FileAction = Literal["create", "update", "mode", "unchanged"]
# A file the manifest lists that nothing renders any more is deleted (prune), in plan's JSON.
PlanFileAction = Literal[FileAction, "delete"]
