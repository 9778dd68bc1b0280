"""The test harness that tests/ and scripts/ share: fault scenarios on loopback (faultkit) and fake hardware
(fakes: a powercap tree, pynvml, amdsmi)."""
