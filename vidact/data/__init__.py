"""Annotations, synthetic data, clip sampling, transforms and the clip dataset."""
