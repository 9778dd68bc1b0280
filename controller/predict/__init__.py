"""Predict time and energy per sample of (variant, hardware, runtime) cells nobody measured, with calibrated
intervals (docs/prediction.md). Pure Python: the controller installs no numpy."""
