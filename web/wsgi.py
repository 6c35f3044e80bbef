"""The production WSGI entry point (`gunicorn web.wsgi:app`) and, with `web/cli.py`, one of the two
composition roots: it wires the Redis broker so that a command's outbox rows are enqueued right after
its commit. Without GONGJI_REDIS_URL nothing is enqueued here and the scheduler's relay pass sends them."""
from models.settings import Settings, configure_logging
from workflows import correlation

from .app import create_app

configure_logging(correlation.current_id)  # gunicorn configures its own loggers only: Gongji's go to stderr at GONGJI_LOG_LEVEL
settings = Settings.from_env()
if settings.redis_url:
    from workers import broker, relay

    broker.setup(settings)
    from workers import actors  # noqa: F401  (the actor must exist on the broker before sending)

    relay.install(coalesce=True)  # under load, many requests' outbox ids share one broker message
app = create_app(settings)
if settings.redis_url:
    from workers import queues

    app.extensions["gongji"]["queue_depth"] = queues.depth
