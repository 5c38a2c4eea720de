"""Shared test helpers: tiny real backend servers, front-end processes, an HTTP client.

Import them as ``from tests.helpers import backends`` (the repository root is on sys.path
through the editable install that scripts/setup.sh makes, or through ``python -m pytest``).
"""
