"""Use cases of the callrouter service, one module per resource."""
