# One image for every service of the team deployment (docker-compose.yml): the migration job
# (`curate db upgrade`), the annotation app (`curate serve --workers N`), the dashboard
# (`curate dashboard`) and one-off `curate` commands. Configuration comes from EMOTIONS_* variables.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/emotions

# The app and the dashboard never import torch, so the image leaves it out (pyproject's `model` extra,
# ~7 GB with CUDA) unless built with `--build-arg WITH_MODEL=1`: then the CPU build of PyTorch, for
# small `curate train-baseline` runs (train on GPU machines with torchrun instead).
ARG WITH_MODEL=0
RUN if [ "$WITH_MODEL" = 1 ]; then \
      pip install --index-url https://download.pytorch.org/whl/cpu "torch>=2.4,<=2.14.1" "torchvision>=0.19,<=0.29.1"; \
    fi

# Dependencies before sources, so a code change does not reinstall them.
COPY pyproject.toml README.md LICENSE ./
RUN mkdir -p annotation_app curation model dashboard curate_cli db_migrations \
    && pip install . && pip uninstall -y emotions-toolkit

COPY annotation_app ./annotation_app
COPY curation ./curation
COPY model ./model
COPY dashboard ./dashboard
COPY curate_cli ./curate_cli
COPY db_migrations ./db_migrations
RUN pip install --no-deps .

# An unprivileged user owning the data folder; the media, exports and runs volumes mount under it.
RUN useradd --create-home --uid 10001 emotions \
    && mkdir -p /data/media /data/exports /data/runs \
    && chown -R emotions:emotions /data
USER emotions
WORKDIR /data
ENV EMOTIONS_DATA_DIR=/data \
    EMOTIONS_MEDIA_DIR=/data/media

EXPOSE 8000 8501
CMD ["curate", "serve", "--host", "0.0.0.0", "--port", "8000"]
