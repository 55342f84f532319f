"""Recipes: one per job — a config, presets, a model, a step and an evaluation on the engine."""
