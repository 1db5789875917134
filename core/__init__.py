"""Inference core: image encoders, the vector index, ranking. Imports no web, database or queue code."""
