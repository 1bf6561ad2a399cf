"""Server-rendered admin pages (Jinja templates, no inline script: the CSP forbids it)."""
