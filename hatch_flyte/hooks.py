"""hatch plugin registration (entry point group ``hatch``)."""
