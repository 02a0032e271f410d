# synchub: one image for the API, the workers and beat.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    URLLIB3_NO_OVERRIDE=1 \
    PIP_NO_BINARY=urllib3-future

RUN apt-get update && apt-get install -y --no-install-recommends build-essential curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY core core
COPY hub hub
COPY connectors connectors
COPY oauth oauth
COPY sync sync
COPY token_vault token_vault
COPY webhooks webhooks
COPY crm crm
COPY sandbox sandbox
COPY migrations migrations
RUN pip install . && useradd --system --uid 10001 synchub
USER synchub

EXPOSE 8000
CMD ["synchub", "api", "--host", "0.0.0.0", "--port", "8000"]
