"""The reference for webhook ingest: a bare Flask handler on the same gunicorn settings as `gongji web`
(it reads the body and answers 202, nothing else). Served by `bench/webhooks.py`."""
from flask import Flask, request

app = Flask(__name__)


@app.post("/webhooks/<platform_id>")
def receive(platform_id: str):
    request.get_data()
    return {"received": platform_id}, 202
