"""The HTTP face of Gongji: the platform JSON API (`web.api`), inbound webhooks, health and metrics.

Views are thin: parse, call a `workflows` command, map `DomainError` to RFC 9457 problem+json."""
