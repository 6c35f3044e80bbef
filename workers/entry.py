"""Module given to the `dramatiq` CLI by `gongji worker`: broker from the environment, then the actors."""
from models.settings import Settings, configure_logging
from workflows import correlation

from . import broker, relay, runtime

configure_logging(correlation.current_id)  # dramatiq set up this process's logging at INFO: GONGJI_LOG_LEVEL decides
_settings = Settings.from_env()
broker.setup(_settings)
broker.add_liveness()  # this process's health file for the container's check (workers/liveness.py)
runtime.configure(_settings)
relay.install()  # an actor's own commands (e.g. applying a webhook) publish their outbox rows at once

from . import actors  # noqa: E402,F401
