"""Between the database and the vector index: embedding stored images into per-encoder vectors and
keeping a FAISS index in line with them. Used by the worker and by the trainer's rebuild-index."""
