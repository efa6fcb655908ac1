"""profile-status: the command line that wires the projector, the API and their tools together."""
