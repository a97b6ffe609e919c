"""Prediction with a trained checkpoint: one video (whole or per window) and batches of videos."""
