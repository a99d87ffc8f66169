"""aecodec: a learned lossy image codec (runtime; never imports torch)."""
