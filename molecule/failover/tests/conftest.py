"""The per-host summary of `clusterctl verify` for molecule's pytest run."""

from clusterctl.verify.plugin import pytest_configure  # noqa: F401
