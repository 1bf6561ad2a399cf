"""JSON API routes, one module per area; all under /api/v1 and token-authenticated."""
