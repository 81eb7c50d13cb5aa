"""The Docker engine image backend."""
