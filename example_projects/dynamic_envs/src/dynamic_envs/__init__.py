"""Environments, one of which is named at run time."""
