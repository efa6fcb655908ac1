"""Reference servers the API is measured against, each a Starlette app served by the same uvicorn settings."""
