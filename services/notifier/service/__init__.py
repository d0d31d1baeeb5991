"""Use cases of the notifier service, one module per resource: typed input in, load, domain rules, store and
outbox in one transaction. Ownership (a user reads and edits only their own devices, preferences and
history; admins anyone's) is checked here, through `Principal.require_self_or_admin`."""
