"""The Redis projection: key names, the Lua write and read scripts, the store, and the reader for other services."""
