"""The projector: follows Postgres changes and keeps the Redis status documents up to date."""
