# The worker image: the hpo package with its CUDA build of PyTorch (the driver comes from the
# host through the NVIDIA container toolkit).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY hpo hpo
COPY model model
COPY storage storage
RUN pip install '.[postgres]' \
    && useradd --create-home --uid 1000 hpo \
    && mkdir -p /data /checkpoints && chown hpo /data /checkpoints
USER hpo
ENTRYPOINT ["hpo"]
CMD ["--help"]
