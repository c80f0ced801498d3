"""Runnable examples that use nir end to end (``nir train-digits``)."""
