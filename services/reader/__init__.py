"""The reader: serves stream and `$all` reads from the node's LMDB, read-only."""
