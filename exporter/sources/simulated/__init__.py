"""Simulation of whole serving boxes and their failure modes (``--simulate PROFILE``)."""
