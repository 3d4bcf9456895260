# The worker image: the hpo package with its CUDA build of PyTorch (the driver comes from the
# host through the NVIDIA container toolkit).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# The dependencies first, in a layer of their own (PyTorch's CUDA build is most of the image):
# installed from pyproject.toml with empty packages, then the stand-in removed, so that a change
# to the code rebuilds only the layers below.
COPY pyproject.toml README.md ./
RUN mkdir hpo model storage \
    && touch hpo/__init__.py model/__init__.py storage/__init__.py \
    && pip install '.[postgres]' \
    && pip uninstall --yes cifar-hpo \
    && rm -rf hpo model storage build cifar_hpo.egg-info
COPY hpo hpo
COPY model model
COPY storage storage
RUN pip install --no-deps . \
    && useradd --create-home --uid 1000 hpo \
    && mkdir -p /data /checkpoints && chown hpo /data /checkpoints
USER hpo
ENTRYPOINT ["hpo"]
CMD ["--help"]
