"""The leader-emitter: publishes every committed event on its live fan-out subject."""
