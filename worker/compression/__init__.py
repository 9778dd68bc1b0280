"""Compression stages as plain functions over (model, spec): prune, quantize, and training helpers."""
