"""Measuring: inputs, timing rounds, peak memory, the bandwidth floor, the machine's description."""
