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

Long responses: the scoring forwards (:func:`response_scores`, :func:`reference_logprobs`)
never build the ``[T, vocab]`` logits of a whole sequence. The model returns its final hidden
states and :func:`chunked_logprobs` projects them through the LM head ``chunk_size`` positions at
a time (temperature applied per chunk), keeping each chunk's log-probability and entropy only;
under autograd each chunk is recomputed in backward (``torch.utils.checkpoint``), so the update
holds one chunk's fp32 logits at a time instead of the whole sequence's. The wrappers expose the
inner model's ``_no_split_modules`` (the decoder layer class), which accelerate's FSDP reads to
shard and activation-checkpoint each decoder layer on its own (docs/long-context.md).
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from r2_write.llm.loading import load_backbone, load_causal_lm, load_tokenizer
from r2_write.rl.ppo_config import PPOConfig
from r2_write.rl.utils import entropy_from_logits, logprobs_from_logits
from r2_write.runs import STATE_FILE

VALUE_HEAD_FILE, OPTIMIZER_FILE = "value_head.pt", "optimizer.pt"
CRITIC_DIR = "critic"  # the separate critic's subdirectory of checkpoints and of final/


@dataclass(frozen=True)
class ScoreRequest:
    """What a scoring forward computes from the final hidden states instead of returning logits.

    Args:
        labels: ``[B, Tr]`` token ids; position ``t`` of the kept hidden states predicts ``labels[:, t]``.
        temperature: Divides each chunk's logits.
        chunk_size: Positions projected through the LM head at a time; 0 = all at once (the
            unchunked reference, ``[B, Tr, vocab]`` fp32).
        entropy: Also return the entropy of each position's distribution.
        entropy_grad: Let the entropy carry gradient (``ent_coef > 0``); otherwise it is computed
            under ``no_grad`` (logged only).
    """

    labels: torch.Tensor
    temperature: float = 1.0
    chunk_size: int = 1024
    entropy: bool = False
    entropy_grad: bool = False

    def apply(self, lm_head: nn.Module, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logprobs [B, Tr], entropy [B, Tr] or None)`` of ``hidden[:, :Tr]`` through ``lm_head``."""
        return chunked_logprobs(hidden[:, : self.labels.shape[1]], lm_head, self.labels, self.temperature,
                                self.chunk_size, self.entropy, self.entropy_grad)


def chunked_logprobs(
    hidden: torch.Tensor, lm_head: nn.Module, labels: torch.Tensor, temperature: float = 1.0, chunk_size: int = 1024,
    entropy: bool = False, entropy_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities of ``labels`` (and entropies) from hidden states, ``chunk_size`` positions at a time.

    Each chunk's logits ``lm_head(hidden) / temperature`` are made in fp32, reduced to one
    log-probability (and one entropy) per position and dropped. With gradients enabled each
    chunk runs under ``torch.utils.checkpoint`` (non-reentrant): backward recomputes that chunk's
    logits instead of keeping every chunk's, so peak memory holds one ``[B, chunk, vocab]``
    block, not ``[B, Tr, vocab]``. ``chunk_size`` 0 computes everything in one block (the
    unchunked reference). Values equal the unchunked ones up to float summation order.

    Args:
        hidden: ``[B, Tr, H]`` final hidden states (after the model's last norm).
        lm_head: The output projection (``model.get_output_embeddings()``).
        labels: ``[B, Tr]`` the token each position predicts.
        temperature: Divides the logits.
        chunk_size: Positions per block; 0 = one block.
        entropy: Also return entropies.
        entropy_grad: The entropy carries gradient; otherwise it is computed without.

    Returns:
        ``(logprobs [B, Tr] fp32, entropy [B, Tr] fp32 or None)``.
    """
    width = hidden.shape[1]
    step = chunk_size if chunk_size and chunk_size > 0 else max(width, 1)
    need_grad = torch.is_grad_enabled() and (hidden.requires_grad or any(p.requires_grad for p in lm_head.parameters()))
    logprobs, entropies = [], []
    for start in range(0, width, step):
        h, y = hidden[:, start : start + step], labels[:, start : start + step]
        if need_grad and chunk_size:
            lp, ent = checkpoint(_chunk_scores, h, y, lm_head, temperature, entropy and entropy_grad,
                                 use_reentrant=False)
        else:
            lp, ent = _chunk_scores(h, y, lm_head, temperature, entropy and entropy_grad)
        if entropy and not entropy_grad:
            with torch.no_grad():
                ent = _chunk_scores(h.detach(), y, lm_head, temperature, True)[1]
        logprobs.append(lp)
        entropies.append(ent)
    if not logprobs:  # no response positions
        empty = hidden.new_zeros(hidden.shape[:2], dtype=torch.float32)
        return empty, empty.clone() if entropy else None
    return torch.cat(logprobs, 1), torch.cat(entropies, 1) if entropy else None


def _chunk_scores(hidden: torch.Tensor, labels: torch.Tensor, lm_head: nn.Module, temperature: float, entropy: bool):
    """One block: fp32 logits / temperature -> (log-probability of each label, entropy or None)."""
    logits = lm_head(hidden).float() / temperature
    logprobs = logprobs_from_logits(logits, labels)
    return logprobs, entropy_from_logits(logits) if entropy else None


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
        self._no_split_modules = _no_split_modules(lm)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int = 0,
        scores: ScoreRequest | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Return ``(logits [B, T, V], values [B, T])`` for the last ``logits_to_keep`` positions (0 = all).

        With ``scores``: ``(logprobs, entropy or None, values)`` of the last ``logits_to_keep``
        positions from :func:`chunked_logprobs` (no full logits).
        """
        if scores is not None:
            hidden = _forward(_backbone(self.lm), input_ids, attention_mask).last_hidden_state
            hidden = hidden[:, -logits_to_keep:] if logits_to_keep else hidden
            logprobs, entropy = scores.apply(self.lm.get_output_embeddings(), hidden)
            return logprobs, entropy, _values(self.value_head, hidden, 0)
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
        self._no_split_modules = _no_split_modules(lm)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int = 0,
        scores: ScoreRequest | None = None,
    ) -> tuple[torch.Tensor, None] | tuple[torch.Tensor, torch.Tensor | None, None]:
        """Return ``(logits [B, T, V], None)`` for the last ``logits_to_keep`` positions (0 = all).

        With ``scores``: ``(logprobs, entropy or None, None)`` from :func:`chunked_logprobs`.
        """
        if scores is not None:
            hidden = _forward(_backbone(self.lm), input_ids, attention_mask).last_hidden_state
            hidden = hidden[:, -logits_to_keep:] if logits_to_keep else hidden
            return (*scores.apply(self.lm.get_output_embeddings(), hidden), None)
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
        self._no_split_modules = _no_split_modules(backbone)

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


def _no_split_modules(model: nn.Module) -> list[str]:
    """The model's ``_no_split_modules`` (decoder layer class names): accelerate's FSDP wraps and
    activation-checkpoints each module of these classes on its own; it reads them from the object
    given to ``prepare`` (our wrapper), not from the model inside."""
    return list(getattr(model, "_no_split_modules", None) or [])


def _backbone(lm: nn.Module) -> nn.Module:
    """The transformer inside a causal LM (``lm.model`` for Llama/Qwen): hidden states, no logits."""
    config = lm.config.get_text_config()
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        raise NotImplementedError(f"{type(lm).__name__} transforms its logits after the LM head (softcapping / "
                                  f"logit_scale): chunked scoring covers plain LM heads only")
    return getattr(lm, lm.base_model_prefix)


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


def response_scores(
    policy: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, context_length: int, temperature: float,
    chunk_size: int = 1024, entropy: bool = False, entropy_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Log-probabilities (and entropies) of the response tokens, and values, without full logits.

    The chunked counterpart of :func:`response_logits_and_values` followed by
    ``logprobs_from_logits`` / ``entropy_from_logits``: the policy returns its final hidden
    states and :func:`chunked_logprobs` scores them ``chunk_size`` positions at a time.

    Returns:
        ``(logprobs [B, Tr], entropy [B, Tr] or None, values [B, Tr] or None)``; values are
        None for an :class:`Actor` (the critic is separate: :func:`response_values`).
    """
    n = input_ids.shape[1] - context_length
    request = ScoreRequest(input_ids[:, context_length:], temperature, chunk_size, entropy, entropy_grad)
    logprobs, ent, values = policy(input_ids, attention_mask, logits_to_keep=n + 1, scores=request)
    return logprobs, ent, values[:, :-1] if values is not None else None


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
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Log-probabilities of the response tokens under the frozen reference model (:func:`chunked_logprobs`)."""
    n = input_ids.shape[1] - context_length
    with root_gathered(ref_model):  # FSDP2: the backbone is called past the root's own forward hook
        hidden = _forward(_backbone(ref_model), input_ids, attention_mask).last_hidden_state[:, -(n + 1):]
        labels = input_ids[:, context_length:]
        return chunked_logprobs(hidden[:, :n], ref_model.get_output_embeddings(), labels, temperature, chunk_size)[0]


@contextmanager
def root_gathered(model: nn.Module):
    """Gather an FSDP2 root's own parameters (embeddings, final norm, LM head, value head) while its submodules are
    called directly: the reference's backbone in scoring, ``policy.lm.generate`` in the rollout, both past the
    root's forward hook that would gather them.

    The decoder layers are FSDP units of their own and gather themselves; a no-op for an unsharded model.
    """
    if not hasattr(model, "unshard"):
        yield
        return
    model.unshard()
    try:
        yield
    finally:
        model.reshard()


# ----------------------------------------------------------------------------- loading and saving


def load_policy(source: Path, cfg: PPOConfig):
    """Tokenizer, policy and its AdamW.

    ``critic: shared``: the policy with value head, the optimizer with separate actor and
    critic learning rates. ``critic: separate``: the :class:`Actor` alone at ``learning_rate``
    (the critic has its own, :func:`load_critic`).
    """
    tokenizer = load_tokenizer(source)
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
