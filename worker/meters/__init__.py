"""Energy meters: context managers that yield a frozen EnergyMeasurement once the window closes."""

from worker.meters.base import EnergyMeasurement, Meter, MeterError

__all__ = ["EnergyMeasurement", "Meter", "MeterError"]
