"""Rendering: the markdown tables and plots of reports/."""
