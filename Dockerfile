# The Forewarn image: `forewarn worker` by default, and every other `forewarn` command (topics, schema,
# notifier, traffic, report, doctor). Production talks to Apache Kafka and a ClickHouse server; see
# docker-compose.yml and docs/operations.md "Running against a real Kafka and ClickHouse".
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# The package, installed (not editable) with its package data: the ClickHouse schema (sinks/schema), the
# default policy and the sample catalog and service points (streams/domain/policy.toml, streams/processes/data), and the
# RocksDB binding of the tables' store (FOREWARN_STORE=rocksdb://, as docker-compose.yml runs it).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY models ./models
COPY sinks ./sinks
RUN pip install ".[rocksdb]" && cd / && rm -rf /src

# A user of its own. Its directories exist in the image, owned by it, so that a named volume mounted on
# one starts out writable by it: the worker's data (FOREWARN_DATA_DIR) and the pseudonym key
# (FOREWARN_PSEUDONYM_KEY_FILE; created on first start, mode 0600, in a volume every worker shares).
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/forewarn forewarn \
    && install -d -o forewarn -g forewarn -m 0750 /var/lib/forewarn /var/lib/forewarn/worker \
    && install -d -o forewarn -g forewarn -m 0700 /var/lib/forewarn/keys
USER forewarn
WORKDIR /var/lib/forewarn
ENV FOREWARN_DATA_DIR=/var/lib/forewarn/worker \
    FOREWARN_PSEUDONYM_KEY_FILE=/var/lib/forewarn/keys/pseudonym.key

# The worker's Faust web server and CRM/ERP API (FOREWARN_WEB_PORT), and its /metrics (FOREWARN_METRICS_PORT).
EXPOSE 6066 9108
# No HEALTHCHECK here: the same image runs one-shot commands and the notifier, which serve no port.
# docker-compose.yml checks the workers' /metrics.
ENTRYPOINT ["forewarn"]
CMD ["worker"]
