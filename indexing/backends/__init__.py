"""Vector-store engines behind `indexing.vectorstore.VectorStore`; the only place faiss or pymilvus is imported."""
