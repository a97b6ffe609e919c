"""Multi-view evaluation and metrics."""
