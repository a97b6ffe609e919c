"""Training: engine, LR schedules, checkpoints, multigrid, distributed."""
