"""Training: data sources, the rate-distortion loss, the loop with checkpoints, and export."""
