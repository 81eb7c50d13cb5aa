"""Extract-transform-load jobs."""
