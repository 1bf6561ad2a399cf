"""Outbound lead campaigns (issue 8): lead import, campaigns, the dialler, outcomes, reports."""
