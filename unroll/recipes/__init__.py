"""One explicit training loop per job: language modelling, classification, forecasting."""
