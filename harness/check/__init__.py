"""Checking results: verdicts against the oracle, the agreement properties and their Hypothesis strategies."""
