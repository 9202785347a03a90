"""presence_service: ephemeral, TTL-based online state, last seen and typing."""
