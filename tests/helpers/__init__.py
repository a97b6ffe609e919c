"""Shared test helpers: a tiny registered model and in-memory data, forked DDP ranks, the fault kit."""
