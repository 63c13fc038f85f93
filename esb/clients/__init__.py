"""Helpers for Python integrators calling the hub with zeep (not used by the hub itself)."""
