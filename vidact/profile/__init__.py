"""FLOPs (multiply-adds), parameters and measured speed."""
