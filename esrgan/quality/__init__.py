"""Judging results: evaluation against classical resampling, metrics, NIQE, MATLAB resize, reports, degradation."""
