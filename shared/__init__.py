"""What the projector, the API, `verify` and other services share: the status rules and the Redis layout."""
