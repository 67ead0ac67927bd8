"""Evaluation: metrics, classic codecs through Pillow, BD-rate, and the results folder."""
