"""Data-only contracts shared by every service and client: subjects, wire shapes, error codes."""
