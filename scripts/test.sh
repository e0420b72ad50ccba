#!/usr/bin/env bash
# Run the test suite against SQLite and a throwaway PostgreSQL server on 127.0.0.1, with headless Chromium
# (scripts/browser.sh installs it when missing) for the page's tests in tests/web.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
pgdir=$(mktemp -d /tmp/rag-pg.XXXXXX)
chmod 755 "$pgdir"
if url=$(scripts/pg.sh start "$pgdir/pg"); then
  export RAG_TEST_POSTGRES_URL="$url"
  echo "PostgreSQL for tests: $url"
else
  echo "could not start PostgreSQL" >&2
  exit 1
fi
trap 'scripts/pg.sh stop "$pgdir/pg"; rm -rf "$pgdir"' EXIT
scripts/browser.sh || { echo "could not install Chromium for the browser tests (tests/web)" >&2; exit 1; }
.venv/bin/python -m pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit $rc
