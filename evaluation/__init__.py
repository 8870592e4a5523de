"""Metrics, suites and the HTML report."""
