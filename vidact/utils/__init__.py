"""Small shared helpers: progress bars, job running, shards."""
