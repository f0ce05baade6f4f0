# One image for the three services and the CLI (CPU TensorFlow). Build: docker build -t recsys .
# Run one service by its command, e.g. `python -m services.gateway.server`; see docker-compose.yml.
FROM python:3.11-slim AS build
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared shared
COPY services services
RUN pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 recsys
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    BIND_HOST=0.0.0.0 \
    MODEL_DIR=/models
USER 10001
WORKDIR /home/recsys
EXPOSE 50050 50051 50052 8080
CMD ["python", "-m", "services.gateway.server"]
