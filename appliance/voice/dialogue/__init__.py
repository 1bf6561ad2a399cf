"""Grounded dialogue for lines with a playbook (issue 10): templates, rules, a constrained LLM."""
