"""The RQ worker: holds the encoder and the FAISS index, runs embedding and attribution jobs."""
