"""The durable timer kinds of callrouter (shared.timers): each is fired once, across replicas."""

DIAL = "callrouter.dial"  # key: leg id; place the leg with the provider
REDIRECT = "callrouter.redirect"  # key: call id; take the waiting caller out of the queue
HANG_UP = "callrouter.hang-up"  # key: leg id; end a leg nobody waits for
ESCALATE = "callrouter.escalate"  # key: alert id; page the next rule of the policy
LEG_DEADLINE = "callrouter.leg-deadline"  # key: leg id; a leg whose end never arrived counts as unanswered
