FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY workflows workflows
COPY workers workers
COPY web web
COPY models models
RUN pip install --no-cache-dir .
USER nobody
EXPOSE 8000
CMD ["gongji", "web"]
