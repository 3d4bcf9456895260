# The worker image: the hpo package with its CUDA build of PyTorch (the driver comes from the
# host through the NVIDIA container toolkit); 6.45 GB, of which the CUDA build is most. On a CPU
# machine it runs as it is (docker-compose.cpu.yml); a smaller CPU-only image would take torch and
# torchvision from PyTorch's CPU index first (README, "A CPU-only image").

# The dependency list, read from pyproject.toml (the one place it is written). Only this stage
# sees pyproject.toml, so an edit elsewhere in it (a test setting, the version) leaves the list,
# and so the cache of the install below, as it was.
FROM python:3.11-slim AS dependencies
COPY pyproject.toml /tmp/
RUN python3 -c 'import tomllib; project = tomllib.load(open("/tmp/pyproject.toml", "rb"))["project"]; print("\n".join(project["dependencies"] + project["optional-dependencies"]["postgres"]))' > /tmp/requirements.txt

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# The dependencies first, in a layer of their own (PyTorch's CUDA build is most of the image's
# 6.5 GB): it is rebuilt only when the list changes, and a change to the code rebuilds only the
# layers below, in seconds.
COPY --from=dependencies /tmp/requirements.txt /tmp/requirements.txt
RUN pip install --requirement /tmp/requirements.txt
COPY pyproject.toml README.md ./
COPY hpo hpo
COPY model model
COPY storage storage
COPY examples examples
RUN pip install --no-deps . \
    && rm -rf build \
    && useradd --create-home --uid 1000 hpo \
    && mkdir -p /data /checkpoints && chown hpo /data /checkpoints
USER hpo
ENTRYPOINT ["hpo"]
CMD ["--help"]
