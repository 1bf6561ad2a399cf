"""Operating the box (issue 12): metrics, readiness, alerts and their delivery, logs."""
