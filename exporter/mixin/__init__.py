"""The monitoring mixin: alert and recording rules, dashboards and runbooks, generated from code."""
