"""Developer tooling: local infrastructure, the services as processes, the dev CLI."""
