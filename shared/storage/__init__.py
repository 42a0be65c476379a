"""The per-store event storage port, its LMDB implementation and an in-memory twin."""
