"""The study: its settings, search space and work queue, the worker that runs it, and recovery."""
