"""Vector-store engines behind `indexing.vectorstore.VectorStore`. Only modules in this package import
faiss (or, later, pymilvus); tests/test_boundaries.py holds the rest of the code to that."""
