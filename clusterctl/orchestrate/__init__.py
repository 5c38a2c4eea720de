"""Orchestration above execution: batches, the floor, and the cluster-wide node steps."""
