"""HTTP front end. Never imports torch or faiss: the worker does the heavy work, reached via Redis."""
