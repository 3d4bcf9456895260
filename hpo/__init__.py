"""Hyper-parameter optimization service for the seed study's CIFAR-10 CNN, on Optuna."""

__version__ = "0.1.0"
