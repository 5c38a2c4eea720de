"""clusterctl: declarative HAProxy, nginx and Apache front ends for a web cluster."""

__version__ = "0.1.0"
