"""The reliability suite: `mathfi-bot run` as a real process, faults injected around it."""
