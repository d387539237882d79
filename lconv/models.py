"""Models built from the mixers: SequenceClassifier (LRA-style) and CausalLM (GPT-style, tied head).

A residual block is `x + dropout(mixer(norm(x)))` (pre-norm) or `norm(x + dropout(mixer(x)))` (post-norm), followed
by the same around an optional pointwise MLP. The classifier follows the official long-conv LRA code (encoder →
blocks → mean pooling → linear decoder); the LM follows GPT-2 (token embedding → blocks of mixer + 4× GELU MLP →
final LayerNorm → head tied to the embedding).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from lconv.mixers import MIXERS, CausalSelfAttention, make_mixer
from lconv.monarch import MonarchMLP


def count_params(model, trainable_only=False):
    """Number of parameters of `model` (shared/tied tensors counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class MLP(nn.Module):
    """Pointwise MLP: Linear(D → expand·D) → GELU → Linear(expand·D → D)."""

    def __init__(self, d_model, expand=4):
        super().__init__()
        self.fc1 = nn.Linear(d_model, expand * d_model)
        self.fc2 = nn.Linear(expand * d_model, d_model)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))  # (B, L, D)


class Block(nn.Module):
    """Residual block: mixer, then an optional MLP, each with LayerNorm (pre- or post-) and dropout."""

    def __init__(self, mixer, d_model, mlp=None, prenorm=True, dropout=0.0):
        super().__init__()
        self.mixer, self.mlp, self.prenorm = mixer, mlp, prenorm
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model) if mlp is not None else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        """x (B, L, D) → (B, L, D)."""
        if self.prenorm:
            x = x + self.dropout(self.mixer(self.norm1(x)))
            if self.mlp is not None:
                x = x + self.dropout(self.mlp(self.norm2(x)))
        else:
            x = self.norm1(x + self.dropout(self.mixer(x)))
            if self.mlp is not None:
                x = self.norm2(x + self.dropout(self.mlp(x)))
        return x


def _check_mixer(mixer):
    if mixer not in MIXERS:
        raise ValueError(f"unknown mixer {mixer!r}; valid names: {', '.join(MIXERS)}")


def _check_tokens(x, vocab_size, l_max, who):
    """Raise a ValueError unless x is an integer (B, L) tensor of ids in [0, vocab_size) with L ≤ l_max."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{who}: expected a (B, L) tensor of token ids, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"{who}: token input must be an integer tensor (B, L), got {x.dtype}; pass x.long(), "
                         "or build the model with d_input=<features> (and no vocab_size) for continuous input")
    if x.ndim != 2:
        raise ValueError(f"{who}: token input must be (B, L), got shape {tuple(x.shape)}"
                         + ("; squeeze the last dim (x[..., 0])" if x.ndim == 3 and x.shape[-1] == 1 else ""))
    if not 1 <= x.shape[1] <= l_max:
        raise ValueError(f"{who}: sequence length L={x.shape[1]} is outside 1..{l_max}; build the model with "
                         f"l_max ≥ {x.shape[1]} or crop the input")
    if torch.compiler.is_compiling() or not x.numel():  # the range needs the values on the host: eager only
        return
    lo, hi = (int(v) for v in torch.aminmax(x))
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"{who}: token ids must lie in [0, {vocab_size}), got min {lo} max {hi}; build the "
                         f"model with vocab_size > {hi}")


class SequenceClassifier(nn.Module):
    """Encoder (Linear for continuous features, Embedding for tokens) → n_layers blocks → mean pool → Linear.

    x is (B, L, d_input) float when d_input is given, or (B, L) integer tokens when vocab_size is given; the
    output is logits (B, n_classes). `mixer_kw` go to the mixer (e.g. bidirectional=True, channels=2, lam=...).
    `mlp=True` adds a 2× GELU MLP after each mixer. `pos_emb` (None = only for attention, which has no notion of
    order otherwise) adds learned position embeddings.
    """

    def __init__(self, d_input=None, vocab_size=None, *, n_classes, d_model=64, n_layers=4, l_max,
                 mixer="longconv", prenorm=True, dropout=0.0, pool="mean", mlp=False, pos_emb=None, **mixer_kw):
        super().__init__()
        if (d_input is None) == (vocab_size is None):
            raise ValueError("SequenceClassifier: give exactly one of d_input (features per step, continuous "
                             "input) or vocab_size (token input)")
        if pool not in ("mean", "last"):
            raise ValueError(f"SequenceClassifier: pool must be 'mean' or 'last', got {pool!r}")
        for name, value in (("n_classes", n_classes), ("d_model", d_model), ("n_layers", n_layers),
                            ("l_max", l_max)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"SequenceClassifier: {name} must be a positive int, got {value!r}")
        _check_mixer(mixer)
        self.d_input, self.vocab_size, self.n_classes = d_input, vocab_size, n_classes
        self.d_model, self.l_max, self.pool = d_model, l_max, pool
        self.encoder = nn.Linear(d_input, d_model) if d_input is not None else nn.Embedding(vocab_size, d_model)
        use_pos = mixer == "attention" if pos_emb is None else pos_emb
        self.pos_emb = nn.Parameter(torch.randn(l_max, d_model) * 0.02) if use_pos else None  # (l_max, D)
        self.blocks = nn.ModuleList(
            Block(make_mixer(mixer, d_model, l_max, dropout=dropout, **mixer_kw), d_model,
                  mlp=MLP(d_model, expand=2) if mlp else None, prenorm=prenorm, dropout=dropout)
            for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model) if prenorm else nn.Identity()
        self.decoder = nn.Linear(d_model, n_classes)

    def _check(self, x):
        who = "SequenceClassifier"
        if self.vocab_size is not None:
            _check_tokens(x, self.vocab_size, self.l_max, who)
            return
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{who}: continuous input must be a floating tensor (B, L, {self.d_input}), got "
                             f"{got}; pass x.float(), or build the model with vocab_size=<V> for token input")
        if x.ndim != 3 or x.shape[-1] != self.d_input:
            hint = "; add the feature dim with x[..., None]" if x.ndim == 2 and self.d_input == 1 else ""
            raise ValueError(f"{who}: input must be (B, L, d_input={self.d_input}), got shape {tuple(x.shape)}"
                             + hint)
        if not 1 <= x.shape[1] <= self.l_max:
            raise ValueError(f"{who}: sequence length L={x.shape[1]} is outside 1..{self.l_max}; build the model "
                             f"with l_max ≥ {x.shape[1]} or crop the input")

    def forward(self, x):
        """x (B, L, d_input) or (B, L) tokens → logits (B, n_classes)."""
        self._check(x)
        h = self.encoder(x)  # (B, L, D)
        if self.pos_emb is not None:
            h = h + self.pos_emb[: h.shape[1]]
        for block in self.blocks:
            h = block(h)  # (B, L, D)
        h = self.norm(h)
        h = h.mean(dim=1) if self.pool == "mean" else h[:, -1]  # (B, D)
        return self.decoder(h)  # (B, n_classes)


class CausalLM(nn.Module):
    """Token embedding → n_layers blocks (mixer + 4× GELU MLP, pre-norm) → LayerNorm → head tied to the embedding.

    tokens (B, L) → logits (B, L, vocab_size); logits at t depend on tokens ≤ t only. `attn_layers` lists block
    indices that use causal attention instead of `mixer` (the hybrid H3 models put attention in 2 layers);
    `n_heads` is their head count. `pos_emb` (None = when any layer is attention) adds learned positions.
    """

    def __init__(self, vocab_size, d_model, n_layers, l_max, mixer="h3conv", mlp="gpt", *, dropout=0.0,
                 attn_layers=(), n_heads=None, pos_emb=None, monarch_nblocks=4, **mixer_kw):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("d_model", d_model), ("n_layers", n_layers),
                            ("l_max", l_max)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"CausalLM: {name} must be a positive int, got {value!r}")
        _check_mixer(mixer)
        if mixer in ("longconv", "s4d") and mixer_kw.get("bidirectional"):
            raise ValueError("CausalLM: a language model needs causal mixers; drop bidirectional=True")
        if mlp not in ("gpt", "monarch"):
            raise ValueError(f"CausalLM: mlp must be 'gpt' or 'monarch', got {mlp!r}")
        bad = [i for i in attn_layers if not (isinstance(i, int) and 0 <= i < n_layers)]
        if bad:
            raise ValueError(f"CausalLM: attn_layers must be block indices in 0..{n_layers - 1}, got {bad}")
        self.vocab_size, self.d_model, self.l_max = vocab_size, d_model, l_max
        self.embedding = nn.Embedding(vocab_size, d_model)
        use_pos = (mixer == "attention" or bool(attn_layers)) if pos_emb is None else pos_emb
        self.pos_emb = nn.Parameter(torch.randn(l_max, d_model) * 0.02) if use_pos else None  # (l_max, D)
        self.drop = nn.Dropout(dropout)

        def mixer_for(i):
            if i in attn_layers or mixer == "attention":
                return make_mixer("attention", d_model, l_max, dropout=dropout, n_heads=n_heads)
            return make_mixer(mixer, d_model, l_max, dropout=dropout, **mixer_kw)

        def mlp_for():
            if mlp == "monarch":  # the paper's claim 10: Monarch/Butterfly MLPs in place of the dense ones
                return MonarchMLP(d_model, expansion=4, nblocks=monarch_nblocks, dropout=0.0)
            return MLP(d_model, expand=4)

        self.blocks = nn.ModuleList(Block(mixer_for(i), d_model, mlp=mlp_for(), prenorm=True,
                                          dropout=dropout) for i in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        nn.init.normal_(self.embedding.weight, std=0.02)  # GPT-2 init; the head shares it
        self.head.weight = self.embedding.weight

    def forward(self, tokens):
        """tokens (B, L) → logits (B, L, vocab_size)."""
        _check_tokens(tokens, self.vocab_size, self.l_max, "CausalLM")
        h = self.embedding(tokens)  # (B, L, D)
        if self.pos_emb is not None:
            h = h + self.pos_emb[: h.shape[1]]
        h = self.drop(h)
        for block in self.blocks:
            h = block(h)  # (B, L, D)
        return self.head(self.norm(h))  # (B, L, V)

    # ---------------------------------------------------------------- cached (stateful) generation

    def prefill(self, tokens):
        """tokens (B, T) → (logits (B, T, V), state): the forward pass that also keeps every layer's cache.

        Each mixer needs a stateful form: causal attention keeps its keys and values (room for l_max positions);
        a mixer with `prefill`/`step` methods (lconv.distill.RecurrentH3) keeps its SSM state. A long convolution
        has none: distil it first (lconv.distill.distill_lm), otherwise this raises ValueError. Eval mode only.
        """
        _check_tokens(tokens, self.vocab_size, self.l_max, "CausalLM.prefill")
        B, T = tokens.shape
        h = self.embedding(tokens)  # (B, T, D)
        if self.pos_emb is not None:
            h = h + self.pos_emb[:T]
        h = self.drop(h)
        caches = []
        for i, block in enumerate(self.blocks):
            y, cache = _mixer_prefill(block.mixer, block.norm1(h), self.l_max, i)  # (B, T, D)
            h = h + block.dropout(y)
            if block.mlp is not None:
                h = h + block.dropout(block.mlp(block.norm2(h)))
            caches.append(cache)
        return self.head(self.norm(h)), {"pos": T, "layers": caches}  # (B, T, V)

    def step(self, token, state):
        """token (B,) ids at position state["pos"] → (logits (B, V), next state); one token through every cache
        (attention's key/value buffers are written in place)."""
        pos = state["pos"]
        if pos >= self.l_max:
            raise ValueError(f"CausalLM.step: position {pos} is past l_max={self.l_max}; cached generation keeps the "
                             "whole history, so prompt + new tokens must fit in l_max")
        _check_tokens(token[:, None], self.vocab_size, self.l_max, "CausalLM.step")
        h = self.embedding(token)  # (B, D)
        if self.pos_emb is not None:
            h = h + self.pos_emb[pos]
        h = self.drop(h)
        caches = []
        for i, block in enumerate(self.blocks):
            y, cache = _mixer_step(block.mixer, block.norm1(h), state["layers"][i], pos)  # (B, D)
            h = h + block.dropout(y)
            if block.mlp is not None:
                h = h + block.dropout(block.mlp(block.norm2(h)))
            caches.append(cache)
        return self.head(self.norm(h)), {"pos": pos + 1, "layers": caches}  # (B, V)


def _mixer_prefill(mixer, x, capacity, index):
    """(y (B, T, D), cache) of one mixer over x (B, T, D): a KV cache for attention, the mixer's own otherwise."""
    if isinstance(mixer, CausalSelfAttention):
        return _attention_prefill(mixer, x, capacity)
    if hasattr(mixer, "prefill") and hasattr(mixer, "step"):
        return mixer.prefill(x)
    raise ValueError(f"CausalLM.prefill: block {index}'s mixer ({type(mixer).__name__}) has no stateful form; "
                     "distil its convolutions into recurrences first (lconv.distill.distill_lm), or generate "
                     "without a cache")


def _mixer_step(mixer, x_t, cache, pos):
    """(y_t (B, D), cache) of one mixer for one token x_t (B, D) at position pos."""
    if isinstance(mixer, CausalSelfAttention):
        return _attention_step(mixer, x_t, cache, pos)
    return mixer.step(x_t, cache)


def _attention_prefill(attn, x, capacity):
    """Causal attention over x (B, T, D), keeping K and V in buffers of `capacity` positions: (y, (K, V))."""
    B, T, D = x.shape
    nh = attn.n_heads
    q, k, v = attn.qkv(x).view(B, T, 3, nh, D // nh).permute(2, 0, 3, 1, 4)  # 3×(B, nh, T, hd)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hd)
    K = k.new_zeros(B, nh, capacity, D // nh)  # (B, nh, capacity, hd)
    V = torch.zeros_like(K)
    K[:, :, :T], V[:, :, :T] = k, v
    return attn.output_linear(y.transpose(1, 2).reshape(B, T, D)), (K, V)


def _attention_step(attn, x_t, cache, pos):
    """One token x_t (B, D) at position pos attending to the cached positions 0 … pos: (y_t (B, D), cache)."""
    B, D = x_t.shape
    nh = attn.n_heads
    K, V = cache
    q, k, v = attn.qkv(x_t).view(B, 3, nh, 1, D // nh).unbind(1)  # 3×(B, nh, 1, hd)
    K[:, :, pos:pos + 1], V[:, :, pos:pos + 1] = k, v
    y = F.scaled_dot_product_attention(q, K[:, :, :pos + 1], V[:, :, :pos + 1])  # (B, nh, 1, hd)
    return attn.output_linear(y.reshape(B, D)), (K, V)


def build_model(task, variant, *, d_model, n_layers, prenorm=False, dropout=0.0, pool="mean", seed=0):
    """The model factory of the experiments: a SequenceClassifier for `task` with `variant`'s mixer (an
    lconv.experiments.Variant: .mixer, .kwargs), its parameters drawn from `seed`."""
    if task.kind != "classify":
        raise ValueError(f"build_model: task {task.name!r} is a {task.kind!r} task; compare() trains classifiers")
    torch.manual_seed(seed)
    return SequenceClassifier(d_input=task.d_input, vocab_size=task.vocab_size, n_classes=task.n_classes,
                              d_model=d_model, n_layers=n_layers, l_max=task.seq_len, mixer=variant.mixer,
                              prenorm=prenorm, dropout=dropout, pool=pool, **variant.kwargs)


# ---------------------------------------------------------------- sampling (as nanoGPT's model.py)

@torch.no_grad()
def generate(model, prompt_tokens, n, temperature=1.0, top_k=None, seed=0, cache=False):
    """Append `n` sampled tokens to `prompt_tokens` ((L,) or (B, L) ids) → (L + n,) or (B, L + n).

    Each step feeds the last `model.l_max` tokens, divides the last logits by `temperature` (0 = greedy argmax),
    keeps the `top_k` largest (None = all) and samples with a generator seeded by `seed`: equal seeds, equal output.
    cache=True: one `model.prefill` of the prompt, then one `model.step` per token (KV cache for attention, the
    state for recurrent layers, see CausalLM.prefill); it keeps the whole history, so L + n − 1 ≤ l_max, and gives
    the tokens the uncached loop gives whenever the two forms compute the same logits.
    """
    if not isinstance(prompt_tokens, torch.Tensor) or prompt_tokens.is_floating_point() or \
            prompt_tokens.ndim not in (1, 2) or prompt_tokens.shape[-1] < 1:
        raise ValueError("generate: prompt_tokens must be a non-empty integer tensor (L,) or (B, L); encode text "
                         "with lconv.experiments.language_modeling.encode_bytes")
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"generate: n must be an int ≥ 0, got {n!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"generate: temperature must be a finite number ≥ 0 (0 = greedy), got {temperature!r}")
    V = model.vocab_size
    if top_k is not None and not (isinstance(top_k, int) and 1 <= top_k <= V):
        raise ValueError(f"generate: top_k must be None or an int in 1..{V}, got {top_k!r}")
    if cache and prompt_tokens.shape[-1] + n - 1 > model.l_max:
        raise ValueError(f"generate(cache=True): prompt ({prompt_tokens.shape[-1]}) + n ({n}) − 1 tokens exceed "
                         f"l_max={model.l_max}; the cache keeps the whole history (use cache=False for a sliding "
                         "window, or a model with a larger l_max)")
    dev = next(model.parameters()).device
    squeeze = prompt_tokens.ndim == 1
    x = prompt_tokens.long().to(dev)
    x = x[None] if squeeze else x  # (B, L)
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    was_training = model.training
    model.eval()
    try:
        state = None
        for _ in range(n):
            if not cache:
                logits = model(x[:, -model.l_max:])[:, -1]  # (B, V)
            elif state is None:
                logits, state = model.prefill(x)
                logits = logits[:, -1]  # (B, V)
            else:
                logits, state = model.step(x[:, -1], state)  # (B, V)
            x = torch.cat([x, next_token(logits, temperature, top_k, gen)], dim=1)  # (B, L + 1)
    finally:
        model.train(was_training)
    return x[0] if squeeze else x


def next_token(logits, temperature, top_k, gen):
    """Sample the next ids (B, 1) from logits (B, V): greedy at temperature 0, else softmax(logits / T) over the
    top_k largest (None = all), drawn with the torch.Generator `gen`."""
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)  # (B, 1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)  # (B, 1)
