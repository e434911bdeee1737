"""The watch engine: the poller (scheduling, polling, group commit of changed polls)."""
