"""The snapshot service: record, read, delete and list aggregate snapshots of a node's stores."""
