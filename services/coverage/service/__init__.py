"""Use cases of the coverage service: typed command in, load, domain rules, store, timers and outbox in one
transaction. Authorization: the route declares the roles; who may see a request (its requester, its
recipients, admins) is decided once, in `requests.visible`; who may move it, by the domain."""
