"""The Slack side: Web API calls, the sender, rendering, slash commands and buttons."""
