"""The critic modes of PPO: ``shared`` (value head on the policy, unchanged) and ``separate`` (veRL).

Runs train() on the tiny random Llama of ``tests/conftest.py`` (``tiny_model_dir``). Most
tests use stand-in token scores (outcome / 10 on the last response token), so they do not
move when the process reward does; the last two run the real placement
(:func:`r2_write.rewards.process.process_reward_fn` -> :func:`r2_write.rl.ppo.token_scores`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from types import SimpleNamespace

from r2_write.rewards.process import ProcessRewardConfig, process_reward_fn
from r2_write.rl import model, ppo, trainer
from r2_write.rl.model import Actor, Critic, load_backbone, load_causal_lm, response_values
from r2_write.rl.ppo import compute_gae, compute_rewards, critic_update, ppo_update
from r2_write.rl.ppo_config import PPOConfig
from r2_write.rl.rollout import rollout
from r2_write.rl.trainer import train
from tests.rl.stand_ins import PROMPTS, fake_reward_fn

torch.set_num_threads(1)


def last_token_scores(ro, results, reward_cfg, *args, **kwargs):
    """Stand-in for ``ppo.token_scores`` (as the trainer calls it): outcome / 10 on each row's last response token."""
    scores = torch.zeros_like(ro.logprobs)
    last = ro.response_mask.sum(1).long() - 1
    scores[torch.arange(len(ro)), last] = torch.tensor([r["outcome"] / 10 for r in results])
    return scores


@pytest.fixture(autouse=True)
def _fixed_token_scores(monkeypatch):
    monkeypatch.setattr(trainer, "token_scores", last_token_scores)


def cfg_for(tmp_path: Path, name: str = "ppo", **overrides) -> PPOConfig:
    values = dict(batch_size=2, mini_batch_size=2, max_new_tokens=8, learning_rate=1e-3, critic_learning_rate=1e-3,
                  total_steps=2, save_every=0, ppo_epochs=2, output_dir=str(tmp_path / name))
    return PPOConfig(**{**values, **overrides})


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def changed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    assert a.keys() == b.keys()
    return any(not torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- config


def test_critic_config_validation():
    assert PPOConfig().critic == "shared" and PPOConfig().critic_warmup_steps == 0
    assert PPOConfig(critic="separate", critic_warmup_steps=5).critic_warmup_steps == 5
    with pytest.raises(ValueError, match="critic must be 'shared' or 'separate'"):
        PPOConfig(critic="twin")
    with pytest.raises(ValueError, match="critic_warmup_steps needs critic: separate"):
        PPOConfig(critic_warmup_steps=3)
    with pytest.raises(ValueError, match="critic_warmup_steps must be >= 0"):
        PPOConfig(critic="separate", critic_warmup_steps=-1)


# ----------------------------------------------------------------------------- shared mode


# train() with critic: shared on the conftest tiny model, computed with ppo.py as it was before
# the separate critic was added (commit 1497c52) and the same stand-in token scores
SHARED_HISTORY_BEFORE = [
    {"response/length_tokens": 8.0, "objective/kl": 0.0, "losses/policy_loss": -0.027065061032772064,
     "losses/value_loss": 0.9291846454143524, "losses/approx_kl": 0.001202508807182312,
     "losses/entropy": 10.79629373550415, "losses/grad_norm": 2.6947749853134155},
    {"response/length_tokens": 8.0, "objective/kl": -0.007983207702636719, "losses/policy_loss": -0.0175524540245533,
     "losses/value_loss": 0.33402423560619354, "losses/approx_kl": 0.0004134383052587509,
     "losses/entropy": 10.79631519317627, "losses/grad_norm": 2.1471604108810425},
]


def test_shared_critic_history_is_unchanged(tiny_model_dir, tmp_path):
    out = train(tiny_model_dir, PROMPTS, fake_reward_fn, cfg_for(tmp_path, critic="shared"))
    for got, expected in zip(out["history"], SHARED_HISTORY_BEFORE, strict=True):
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    final = Path(out["final_dir"])
    assert (final / model.VALUE_HEAD_FILE).exists() and not (final / model.CRITIC_DIR).exists()


# ----------------------------------------------------------------------------- separate critic: pieces


def test_separate_critic_is_the_backbone_with_its_own_value_head(tiny_model_dir):
    lm, backbone = load_causal_lm(tiny_model_dir), load_backbone(tiny_model_dir)
    assert all(torch.equal(a, b) for a, b in zip(lm.model.state_dict().values(), backbone.state_dict().values()))
    assert not set(map(id, lm.parameters())) & set(map(id, backbone.parameters()))  # a second copy
    critic = Critic(backbone)
    ids = torch.tensor([[1, 5, 6, 7, 8]])
    att = torch.ones_like(ids)
    with torch.no_grad():
        hidden = lm(input_ids=ids, attention_mask=att, output_hidden_states=True).hidden_states[-1]
        expected = critic.value_head(hidden).squeeze(-1)
        assert torch.allclose(critic(ids, att), expected, atol=1e-6)  # same backbone output as the policy's
        assert torch.allclose(response_values(critic, ids, att, 2), expected[:, 1:-1], atol=1e-6)
    logits, values = Actor(lm)(ids, att)
    assert values is None and logits.shape[:2] == ids.shape


def test_frozen_actor_is_not_updated_and_critic_update_moves_only_the_critic(tiny_model_dir):
    cfg = PPOConfig(batch_size=2, mini_batch_size=1, max_new_tokens=6, critic="separate", critic_learning_rate=1e-2)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    actor, critic = Actor(load_causal_lm(tiny_model_dir)), Critic(load_backbone(tiny_model_dir))
    ref = load_causal_lm(tiny_model_dir).requires_grad_(False)
    torch.manual_seed(0)
    ro = rollout(actor, ref, tokenizer, PROMPTS[:2], cfg, critic=critic)
    scores = last_token_scores(ro, [{"outcome": 9.0}, {"outcome": 1.0}], None)
    rewards, _ = compute_rewards(scores, ro.logprobs, ro.ref_logprobs, ro.response_mask, cfg.kl_coef)
    advantages, returns = compute_gae(rewards, ro.values, ro.response_mask, cfg.gamma, cfg.lam)
    actor_before = {k: v.clone() for k, v in actor.state_dict().items()}
    critic_before = {k: v.clone() for k, v in critic.state_dict().items()}

    actor.requires_grad_(False)  # the critic's warm-up
    actor_optimizer = torch.optim.AdamW(actor.parameters(), lr=1e-2)
    assert ppo_update(actor, actor_optimizer, ro, advantages, returns, cfg) == {"ppo/updates": 0.0,
                                                                               "ppo/early_stopped": 0.0}
    stats = critic_update(critic, torch.optim.AdamW(critic.parameters(), lr=1e-2), ro, returns, cfg)

    assert not changed(actor_before, actor.state_dict())
    assert changed(critic_before, critic.state_dict())
    assert stats["critic/updates"] == 2.0  # two mini-batches of one rollout
    assert {"losses/value_loss", "losses/value_clipfrac", "losses/critic_grad_norm"} <= set(stats)

    actor.requires_grad_(True)
    stats = ppo_update(actor, actor_optimizer, ro, advantages, returns, cfg)
    assert changed(actor_before, actor.state_dict())
    assert "losses/policy_loss" in stats and "losses/value_loss" not in stats  # veRL's actor loss: no value term


def test_actor_optimizer_holds_only_the_lm(tiny_model_dir):
    cfg = PPOConfig(critic="separate", learning_rate=1e-6, critic_learning_rate=1e-5)
    _, actor, optimizer = model.load_policy(Path(tiny_model_dir), cfg)
    critic, critic_optimizer = model.load_critic(Path(tiny_model_dir), cfg)
    assert isinstance(actor, Actor) and [g["lr"] for g in optimizer.param_groups] == [1e-6]
    assert {id(p) for p in optimizer.param_groups[0]["params"]} == {id(p) for p in actor.lm.parameters()}
    assert [g["lr"] for g in critic_optimizer.param_groups] == [1e-5]
    assert {id(p) for p in critic_optimizer.param_groups[0]["params"]} == {id(p) for p in critic.parameters()}


# ----------------------------------------------------------------------------- separate critic: train()


def test_critic_warmup_trains_the_critic_alone_then_both(tiny_model_dir, tmp_path):
    cfg = cfg_for(tmp_path, critic="separate", critic_warmup_steps=1, save_every=1, keep_checkpoints=0,
                  cleanup_checkpoints=False)
    out = train(tiny_model_dir, PROMPTS, fake_reward_fn, cfg)
    start, root = weights(Path(tiny_model_dir)), tmp_path / "ppo"
    start_backbone = {k.removeprefix("model."): v for k, v in start.items() if k.startswith("model.")}
    step1, final = root / "checkpoint-1", Path(out["final_dir"])

    # step 1 (warm-up): the critic moved, the actor did not
    assert not changed(start, weights(step1))
    assert changed(start_backbone, weights(step1 / "critic"))
    assert out["history"][0]["ppo/updates"] == 0.0 and out["history"][0]["critic/updates"] == 2.0
    assert "losses/policy_loss" not in out["history"][0]
    # step 2: both moved
    assert changed(weights(step1), weights(final))
    assert changed(weights(step1 / "critic"), weights(final / model.CRITIC_DIR))
    assert out["history"][1]["ppo/updates"] == 2.0 and "losses/policy_loss" in out["history"][1]
    assert not torch.equal(torch.load(step1 / "critic" / model.VALUE_HEAD_FILE)["weight"],
                           torch.load(final / "critic" / model.VALUE_HEAD_FILE)["weight"])

    # final/ is a plain causal LM directory; final/critic/ is a reusable critic
    assert not (final / model.VALUE_HEAD_FILE).exists()
    assert AutoModelForCausalLM.from_pretrained(final).config.hidden_size == 32
    reused, _ = model.load_critic(final, cfg)
    assert torch.equal(reused.value_head.weight, torch.load(final / "critic" / model.VALUE_HEAD_FILE)["weight"])
    assert not changed(weights(final / "critic"), reused.backbone.state_dict())


def test_separate_critic_resumes_with_its_weights_and_optimizer(tiny_model_dir, tmp_path):
    def cfg(steps, name):
        return cfg_for(tmp_path, name, total_steps=steps, save_every=1, critic="separate", critic_warmup_steps=1,
                       cleanup_checkpoints=False)

    full = train(tiny_model_dir, PROMPTS, fake_reward_fn, cfg(2, "full"))
    train(tiny_model_dir, PROMPTS, fake_reward_fn, cfg(1, "resumed"))
    logged = []
    resumed = train(tiny_model_dir, PROMPTS, fake_reward_fn, cfg(2, "resumed"), log_fn=lambda m, step: logged.append(step))

    assert logged == [2]  # step 1 (the warm-up) came from checkpoint-1
    assert len(resumed["history"]) == 2
    # step 2's values come from the restored critic, its update from the restored critic optimizer (Adam moments)
    for key in ("losses/value_loss", "losses/critic_grad_norm", "losses/policy_loss", "objective/kl"):
        assert resumed["history"][1][key] == pytest.approx(full["history"][1][key], rel=1e-4, abs=1e-7), key
    for part in ("", model.CRITIC_DIR):
        a, b = weights(Path(full["final_dir"]) / part), weights(Path(resumed["final_dir"]) / part)
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), part


# ----------------------------------------------------------------------------- the real reward placement


def length_judge(prompts, texts, rubrics):
    """A deterministic judge: the text's length in characters, capped at 10."""
    return [min(10.0, float(len(t))) for t in texts]


def test_real_token_scores_put_each_version_reward_on_its_closing_token(tiny_model_dir):
    """process_reward_fn -> ppo.token_scores on a well-formed completion tokenized by the policy's tokenizer."""
    text = ("<think>\n<draft>\nab\n</draft>\n<reflection>\nlonger\n</reflection>\n"
            "<revision>\nabcd\n</revision>\n</think>\nabcd")
    reward_cfg = ProcessRewardConfig()
    result = process_reward_fn(length_judge, reward_cfg)(["Write."], [text])[0]
    assert result["format_violation"] is None and result["version_scores"] == [2.0, 4.0] and result["outcome"] == 4.0
    offsets = AutoTokenizer.from_pretrained(tiny_model_dir)(text, return_offsets_mapping=True,
                                                            add_special_tokens=False)["offset_mapping"]
    padded = SimpleNamespace(logprobs=torch.zeros(1, len(offsets) + 3), token_offsets=[offsets])  # 3 padding tokens
    scores = ppo.token_scores(padded, [result], reward_cfg, process_weight=0.5)[0]

    def closing(tag: str) -> int:  # the token holding the tag's last character
        end = text.index(tag) + len(tag)
        return next(i for i, (a, b) in enumerate(offsets) if a < end <= b)

    (draft_end, draft_r), (revision_end, revision_r) = result["rewards"]
    assert (draft_end, revision_end) == (text.index("</draft>") + 8, text.index("</revision>") + 11)
    expected = torch.zeros_like(scores)
    expected[closing("</draft>")] += 0.5 * draft_r
    expected[closing("</revision>")] += 0.5 * revision_r
    expected[len(offsets) - 1] += (4.0 - 1) / 9  # the normalised outcome on the last response token
    assert torch.allclose(scores, expected, atol=1e-6)
    assert draft_r > 0 and revision_r > 0 and scores[len(offsets):].abs().sum() == 0
    outcome_only = ppo.token_scores(padded, [result], reward_cfg, process_weight=0.0)[0]
    assert outcome_only.nonzero().flatten().tolist() == [len(offsets) - 1]


def test_separate_critic_trains_on_the_real_reward_placement(tiny_model_dir, tmp_path, monkeypatch):
    """train() with the real process reward and the real ppo.token_scores (not the stand-in of the other tests)."""
    seen = []

    def recording(ro, results, reward_cfg, process_weight):
        scores = ppo.token_scores(ro, results, reward_cfg, process_weight)
        seen.append((ro.response_mask.clone(), results, scores.clone()))
        return scores

    monkeypatch.setattr(trainer, "token_scores", recording)
    reward_cfg = ProcessRewardConfig()
    out = train(tiny_model_dir, PROMPTS, process_reward_fn(length_judge, reward_cfg),
                cfg_for(tmp_path, critic="separate"), reward_cfg=reward_cfg)
    assert len(seen) == 2 and len(out["history"]) == 2
    for mask, results, scores in seen:
        for i, res in enumerate(results):
            last = int(mask[i].sum()) - 1
            if res["format_violation"] or res["outcome"] is None:  # the random policy writes no <think>
                assert scores[i, last] == -reward_cfg.format_penalty
                assert scores[i].nonzero().flatten().tolist() == [last]
            else:
                assert scores[i, last] >= (res["outcome"] - 1) / 9 - 1e-6
    violations = [sum(bool(r["format_violation"]) for r in results) for _, results, _ in seen]  # a count per step
    assert [h["reward/format_violations"] for h in out["history"]] == pytest.approx(violations)
    assert all(h["critic/updates"] == 2.0 for h in out["history"]) and "losses/value_loss" in out["history"][0]
