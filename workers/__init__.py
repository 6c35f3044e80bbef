"""Background processing: the dramatiq broker, the outbox relay, the actors and the one scheduler.

Import order matters with dramatiq: `workers.broker.setup()` must run before `workers.actors` is imported,
or the first `@actor` creates a default broker. Everything here calls `workflows`; nothing in `workflows`
imports this package."""
