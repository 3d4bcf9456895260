"""The datasets a study can name, apart from their loaders so that the CLI starts without torch."""

DATASETS = ("cifar10", "digits", "synthetic")
