"""The Postgres side: connecting, and reading the rows of the two tables at one snapshot."""
