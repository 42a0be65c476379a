"""`esdb up`: an embedded nats-server plus every service as a supervised child process."""
