"""The application: service wiring, HTTP routes, `check`."""
