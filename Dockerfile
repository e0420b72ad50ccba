# The rag-service API. CPU image; point RAG_GENERATOR__URL at vLLM for generation.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    RAG_DATA_DIR=/var/lib/rag HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
WORKDIR /app
COPY pyproject.toml README.md ./
COPY rag ./rag
COPY indexer ./indexer
COPY api ./api
COPY eval ./eval
COPY cli ./cli
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install '.[ray]'
RUN useradd --system --home /var/lib/rag rag && mkdir -p /var/lib/rag && chown rag /var/lib/rag
USER rag
EXPOSE 8000
CMD ["rag", "serve", "--host", "0.0.0.0", "--port", "8000"]
