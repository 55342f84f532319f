"""Scores: perplexity, classification accuracy and confusion, forecast errors and backtests."""
