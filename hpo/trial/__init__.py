"""One trial: the objective, its per-epoch bookkeeping, checkpoints and background writes."""
