"""The models PPO trains: the policy with a value head, the actor and veRL's separate critic; loading and saving.

The critic (``PPOConfig.critic``) is either ``shared``: a value head on the policy's last
hidden state (:class:`PolicyWithValue`, one model, one optimizer, one loss; fits a CPU), or
``separate``, as in veRL: the actor is the causal LM alone (:class:`Actor`, policy loss only)
and the critic a second copy of the starting backbone with its own value head
(:class:`Critic`), optimizer and update (:func:`r2_write.rl.ppo.critic_update`). The
response-scoring forwards (:func:`response_logits_and_values`, :func:`response_values`,
:func:`reference_logprobs`) serve both the rollout and the update. A saved policy directory is
a plain Hugging Face causal LM (plus ``value_head.pt`` when shared); a separate critic goes to
its ``critic/`` subdirectory.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from r2_write.rl.ppo_config import PPOConfig
from r2_write.rl.utils import logprobs_from_logits
from r2_write.runs import STATE_FILE

VALUE_HEAD_FILE, OPTIMIZER_FILE = "value_head.pt", "optimizer.pt"
CRITIC_DIR = "critic"  # the separate critic's subdirectory of checkpoints and of final/


class PolicyWithValue(nn.Module):
    """A causal LM (the actor) plus a scalar value head on its last hidden state (the critic).

    Args:
        lm: A transformers causal LM.
        value_head: An existing ``nn.Linear(hidden, 1)``; a fresh small one when None.
    """

    def __init__(self, lm: nn.Module, value_head: nn.Linear | None = None):
        super().__init__()
        self.lm = lm
        self.value_head = _placed_value_head(lm, value_head)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logits [B, T, V], values [B, T])`` for the last ``logits_to_keep`` positions (0 = all)."""
        out = _forward(self.lm, input_ids, attention_mask, logits_to_keep=logits_to_keep, output_hidden_states=True)
        return out.logits, _values(self.value_head, out.hidden_states[-1], logits_to_keep)


class Actor(nn.Module):
    """The causal LM alone: the actor when the critic is separate (``critic: separate``).

    Same interface as :class:`PolicyWithValue` without the value head; the values come from
    the :class:`Critic`, and :func:`~r2_write.rl.ppo.ppo_loss` then holds the policy loss only.

    Args:
        lm: A transformers causal LM.
    """

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int = 0
    ) -> tuple[torch.Tensor, None]:
        """Return ``(logits [B, T, V], None)`` for the last ``logits_to_keep`` positions (0 = all)."""
        return _forward(self.lm, input_ids, attention_mask, logits_to_keep=logits_to_keep).logits, None


class Critic(nn.Module):
    """veRL's separate critic: a transformer backbone with a scalar value head on its last hidden state.

    The backbone is a second copy of the starting checkpoint without its LM head
    (:func:`load_backbone`), trained by its own optimizer (:func:`~r2_write.rl.ppo.critic_update`).

    Args:
        backbone: A transformers base model (``AutoModel``: hidden states, no logits).
        value_head: An existing ``nn.Linear(hidden, 1)``; a fresh small one when None.
    """

    def __init__(self, backbone: nn.Module, value_head: nn.Linear | None = None):
        super().__init__()
        self.backbone = backbone
        self.value_head = _placed_value_head(backbone, value_head)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int = 0) -> torch.Tensor:
        """Return ``values [B, T]`` for the last ``logits_to_keep`` positions (0 = all)."""
        hidden = _forward(self.backbone, input_ids, attention_mask).last_hidden_state
        return _values(self.value_head, hidden, logits_to_keep)


def new_value_head(config) -> nn.Linear:
    """A fresh ``nn.Linear(hidden, 1)`` with small weights and zero bias (values start near 0)."""
    hidden = config.get_text_config().hidden_size
    value_head = nn.Linear(hidden, 1)
    nn.init.normal_(value_head.weight, std=1.0 / (hidden + 1) ** 0.5)
    nn.init.zeros_(value_head.bias)
    return value_head


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as ``generate`` uses them (so scores match sampling)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _forward(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs):
    """``model``'s forward pass with :func:`position_ids` and no KV cache (one pass over whole sequences)."""
    return model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                 use_cache=False, **kwargs)


def _placed_value_head(model: nn.Module, value_head: nn.Linear | None) -> nn.Linear:
    """``value_head``, or a fresh one for ``model``'s hidden size (:func:`new_value_head`), on ``model``'s device."""
    if value_head is None:
        value_head = new_value_head(model.config)
    return value_head.to(next(model.parameters()).device)


def _values(value_head: nn.Linear, hidden: torch.Tensor, logits_to_keep: int) -> torch.Tensor:
    """The value head on the hidden states of the last ``logits_to_keep`` positions (0 = all): ``[B, T]``."""
    if logits_to_keep:
        hidden = hidden[:, -logits_to_keep:]
    return value_head(hidden.to(value_head.weight.dtype)).squeeze(-1)


def response_logits_and_values(
    policy: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, context_length: int, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Policy logits (divided by ``temperature``) and values at the positions predicting each response token.

    The values are None for an :class:`Actor` (the critic is separate: :func:`response_values`).
    """
    n = input_ids.shape[1] - context_length
    logits, values = policy(input_ids, attention_mask, logits_to_keep=n + 1)
    return logits[:, :-1] / temperature, values[:, :-1] if values is not None else None


def response_values(
    critic: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, context_length: int
) -> torch.Tensor:
    """The separate critic's values at the positions predicting each response token."""
    n = input_ids.shape[1] - context_length
    return critic(input_ids, attention_mask, logits_to_keep=n + 1)[:, :-1]


def reference_logprobs(
    ref_model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    context_length: int,
    temperature: float,
) -> torch.Tensor:
    """Log-probabilities of the response tokens under the frozen reference model."""
    n = input_ids.shape[1] - context_length
    logits = _forward(ref_model, input_ids, attention_mask, logits_to_keep=n + 1).logits
    return logprobs_from_logits(logits[:, :-1] / temperature, input_ids[:, context_length:])


# ----------------------------------------------------------------------------- loading and saving


def load_causal_lm(path: str | Path):
    """Load a causal LM in float32 from a local directory.

    A stale ``quantization_config`` of the GGUF conversion is dropped (the weights are plain
    safetensors), so the model can be saved again with ``save_pretrained``.
    """
    from transformers import AutoModelForCausalLM

    return _load_pretrained(AutoModelForCausalLM, path)


def load_backbone(path: str | Path):
    """Load the transformer backbone of a causal LM directory (``AutoModel``: no LM head) in float32.

    The separate critic starts from it; a critic directory (``critic/``) loads the same way.
    From a causal LM directory transformers reports ``lm_head.weight`` as unexpected: the
    head is left out on purpose.
    """
    from transformers import AutoModel

    return _load_pretrained(AutoModel, path)


def _load_pretrained(auto_cls, path: str | Path):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    qc = getattr(config, "quantization_config", None)
    method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
    if qc is not None and str(getattr(method, "value", method)) == "gguf":
        del config.quantization_config
    return auto_cls.from_pretrained(path, config=config, dtype=torch.float32)


def load_policy(source: Path, cfg: PPOConfig):
    """Tokenizer, policy and its AdamW.

    ``critic: shared``: the policy with value head, the optimizer with separate actor and
    critic learning rates. ``critic: separate``: the :class:`Actor` alone at ``learning_rate``
    (the critic has its own, :func:`load_critic`).
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    lm = load_causal_lm(source)
    if cfg.gradient_checkpointing:
        _enable_gradient_checkpointing(lm)
    if cfg.critic == "separate":
        return tokenizer, Actor(lm), torch.optim.AdamW(lm.parameters(), lr=cfg.learning_rate)
    policy = PolicyWithValue(lm)
    optimizer = torch.optim.AdamW(
        [
            {"params": list(policy.lm.parameters()), "lr": cfg.learning_rate},
            {"params": list(policy.value_head.parameters()), "lr": cfg.critic_learning_rate},
        ]
    )
    return tokenizer, policy, optimizer


def load_critic(source: Path, cfg: PPOConfig) -> tuple[Critic, torch.optim.Optimizer]:
    """The separate critic and its AdamW at ``critic_learning_rate``.

    ``source`` is a checkpoint or the starting policy directory. Its ``critic/`` (backbone and
    value head, as written by :func:`save_critic`) is loaded when present: a checkpoint always
    has one, and a finished run's ``final/`` brings its trained critic along. Otherwise the
    critic is the policy's backbone with a fresh value head.
    """
    critic_dir = source / CRITIC_DIR
    if critic_dir.is_dir():
        critic = Critic(load_backbone(critic_dir))
        critic.value_head.load_state_dict(torch.load(critic_dir / VALUE_HEAD_FILE, map_location="cpu"))
    elif (source / STATE_FILE).exists():
        raise ValueError(f"checkpoint {source} has no {CRITIC_DIR}/: it was written with critic: shared")
    else:
        critic = Critic(load_backbone(source))
    if cfg.gradient_checkpointing:
        _enable_gradient_checkpointing(critic.backbone)
    return critic, torch.optim.AdamW(critic.parameters(), lr=cfg.critic_learning_rate)


def _enable_gradient_checkpointing(model: nn.Module) -> None:
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def save_model(path: Path, policy: PolicyWithValue | Actor, tokenizer, state_dict: dict | None = None) -> None:
    """The policy as a plain Hugging Face causal LM directory (plus ``value_head.pt`` when shared).

    ``state_dict``: the policy's full state dict (FSDP, gathered) to write instead of its modules'.
    """
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    if state_dict is None:
        policy.lm.save_pretrained(path)
    else:
        policy.lm.save_pretrained(path, state_dict=_prefixed(state_dict, "lm."))
    tokenizer.save_pretrained(path)
    if isinstance(policy, PolicyWithValue):
        head = policy.value_head.state_dict() if state_dict is None else _prefixed(state_dict, "value_head.")
        torch.save(head, path / VALUE_HEAD_FILE)


def save_critic(path: Path, critic: Critic, tokenizer, state_dict: dict | None = None) -> None:
    """The separate critic: its backbone (``AutoModel`` directory), tokenizer and ``value_head.pt``."""
    path.mkdir(parents=True, exist_ok=True)
    if state_dict is None:
        critic.backbone.save_pretrained(path)
        head = critic.value_head.state_dict()
    else:
        critic.backbone.save_pretrained(path, state_dict=_prefixed(state_dict, "backbone."))
        head = _prefixed(state_dict, "value_head.")
    tokenizer.save_pretrained(path)
    torch.save(head, path / VALUE_HEAD_FILE)


def _prefixed(state_dict: dict, prefix: str) -> dict:
    """The entries of ``state_dict`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
