"""The demo kit: embedded servers, a simulated workload and `profile-status demo`. Not needed to run the service."""
