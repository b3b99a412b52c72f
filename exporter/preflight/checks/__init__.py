"""The preflight checks, one small function each, grouped by what they read."""
