"""profile-status: the command line (`profile-status ...`). The service itself lives in `shared`, `projector` and `api`."""
