"""Watching the fleet: its Prometheus metrics, the fleet at a glance, and health checks."""
