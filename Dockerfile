# One image for the shop, the worker (it runs the pipeline), the search API and the
# one-shot setup services of docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    STREET2SHOP_HOME=/data PREFECT_SERVER_ANALYTICS_ENABLED=false

WORKDIR /app
COPY . .
# CPU wheels of torch: the image runs on machines without a GPU.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -e .

# Run as an unprivileged user; /data is the shared artifact-store volume.
RUN useradd --create-home --uid 1000 street2shop && mkdir -p /data && chown street2shop /data
USER street2shop
VOLUME ["/data"]
CMD ["street2shop", "--help"]
