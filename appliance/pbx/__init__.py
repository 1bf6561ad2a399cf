"""PBX configuration from the store: trunks, extensions, routes, outbound rules (issue 11)."""
