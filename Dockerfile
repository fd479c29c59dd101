# The Forewarn worker. Production talks to Apache Kafka and a ClickHouse server (docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY models ./models
COPY sinks ./sinks
RUN pip install --no-cache-dir . && useradd --system --home /var/lib/forewarn forewarn \
    && mkdir -p /var/lib/forewarn && chown forewarn /var/lib/forewarn
USER forewarn
ENV FOREWARN_DATA_DIR=/var/lib/forewarn/worker
EXPOSE 6066 9108
ENTRYPOINT ["forewarn"]
CMD ["worker"]
