# agent-memory as a streamable HTTP server. Configured only by environment (AGENT_MEMORY_*, secrets also as
# AGENT_MEMORY_<NAME>_FILE pointing at a mounted file); see docs/configuration.md and docs/deploy.md.
#
#   docker build -t agent-memory .                             # add --build-arg EXTRAS=sentry for error reporting
#   docker run -p 8765:8765 -e AGENT_MEMORY_DATABASE_URL=... -e AGENT_MEMORY_JWT_SECRET_FILE=/run/secrets/jwt \
#       -e AGENT_MEMORY_ALLOWED_HOSTS=memory.example.com agent-memory

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- build: resolve the locked dependencies into a virtual environment --------------------------------------
FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=""
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir "uv==0.13.9"
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project ${EXTRAS:+--extra $EXTRAS}
COPY src ./src
RUN uv sync --locked --no-dev --no-editable ${EXTRAS:+--extra $EXTRAS}

# --- runtime: the environment and nothing else (no compilers, no uv, no pip cache) -------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 agent-memory \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/agent-memory --create-home \
       --shell /usr/sbin/nologin agent-memory
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AGENT_MEMORY_HTTP_HOST=0.0.0.0 \
    AGENT_MEMORY_HTTP_PORT=8765 \
    AGENT_MEMORY_LOG_FORMAT=json \
    AGENT_MEMORY_DATA_DIR=/var/lib/agent-memory
USER 10001:10001
WORKDIR /var/lib/agent-memory
EXPOSE 8765
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["agent-memory"]
CMD ["serve", "--http"]
