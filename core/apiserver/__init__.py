"""The API server (private implementation; its contract is the Kubernetes REST API)."""
