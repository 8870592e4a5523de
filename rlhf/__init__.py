"""Preference store, reward models, alignment trainers and the prompt optimiser."""
