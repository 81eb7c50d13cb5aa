"""The adapters through which builds reach the pipeline: hatch, setuptools and the CLI."""
