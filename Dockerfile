FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir -e .
ENV STREET2SHOP_HOME=/data PREFECT_SERVER_ANALYTICS_ENABLED=false
