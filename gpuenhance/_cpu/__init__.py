"""CPU engine: OpenCV where it covers the case, vectorized NumPy elsewhere."""
