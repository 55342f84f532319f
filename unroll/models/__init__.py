"""Models built on unroll's layers: language model, classifiers, forecaster."""
