"""The seed study's CNN, its data and its one training loop. Knows nothing of Optuna."""
