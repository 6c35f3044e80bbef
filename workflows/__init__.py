"""The domain: the binding state machine, eligibility rules, commands, timers and region policies.

Imports `models` only; never Flask, dramatiq or anything in `web`/`workers`. Side effects leave as outbox
rows written in the command's own transaction."""
