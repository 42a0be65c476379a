"""The admin web UI: a client of the public API and the live subjects, served over HTTP."""
