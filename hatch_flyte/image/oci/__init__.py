"""The daemonless, reproducible OCI backend (``tool.flyte.image.backend = "oci"``).

No Docker engine: the base image comes from a registry (distribution API v2), an OCI layout
directory (``oci:/path[:tag]``) or a ``docker save`` archive (``docker-archive:/path.tar``); the venv,
the dependency wheels and the project wheel are appended as layers written in pure Python; the
result is an OCI image layout and a ``docker load`` archive in the output directory, pushed through
the registry API when asked. The same inputs (and ``SOURCE_DATE_EPOCH``) give the same manifest digest.
"""
