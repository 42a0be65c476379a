"""The `esdb` command line."""
