# One image for the API, the worker and the CLI (docker-compose.yml picks the command).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY billing billing
COPY workflows workflows
COPY activities activities
COPY starter starter
COPY overtime overtime
COPY devstack devstack
COPY config config
COPY worker.py ./
# Bytecode built once at build time: the processes never write any (PYTHONDONTWRITEBYTECODE),
# so without it every start (and the strict sandbox, if ever used) compiles from source.
RUN pip install --no-cache-dir . && python -m compileall -q /app && useradd --create-home overtime
USER overtime
EXPOSE 8000
# uvicorn with Overtime's limits (starter/serve.py); OVERTIME_ENV=production (compose)
# refuses to start with a development secret.
CMD ["python", "-m", "starter.serve", "--host", "0.0.0.0", "--port", "8000"]
