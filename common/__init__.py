"""Shared kernel: settings, database, storage and job names. Imports no torch or faiss."""
