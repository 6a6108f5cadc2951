"""Character-level language modelling on CPython's ``pydoc_data.topics`` text with a small causal transformer."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset
from torchmetrics.text import Perplexity

from lightning_tuning.demos.classification import ClassificationModule
from lightning_tuning.demos.datamodule import SplitDataModule

# A fixed vocabulary (newline + printable ASCII) rather than one built from the text: the model must know its
# size when it is constructed (optimizers from YAML are built before any data is loaded), and the corpus
# differs between Python versions. The few other characters are folded or mapped to UNKNOWN_CHAR.
VOCABULARY = "\n" + "".join(chr(code) for code in range(32, 127))
UNKNOWN_CHAR = "?"
_FOLD_TYPOGRAPHY = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-", "\u2026": "..."}
)
_CHAR_TO_INDEX = {char: index for index, char in enumerate(VOCABULARY)}


def load_corpus() -> str:
    """Returns the pydoc topics text shipped with CPython, folded to :data:`VOCABULARY`."""
    from pydoc_data.topics import topics

    text = "\n".join(topics[name] for name in sorted(topics)).translate(_FOLD_TYPOGRAPHY)
    return "".join(char if char in _CHAR_TO_INDEX else UNKNOWN_CHAR for char in text)


def encode(text: str) -> Tensor:
    """Maps characters of :data:`VOCABULARY` to their indices (int64)."""
    return torch.tensor([_CHAR_TO_INDEX[char] for char in text], dtype=torch.long)


def decode(indices: Tensor) -> str:
    """Inverse of :func:`encode`."""
    return "".join(VOCABULARY[index] for index in indices.tolist())


def _windows(tokens: Tensor, block_size: int) -> TensorDataset:
    # consecutive windows of block_size + 1 characters overlapping by one: inputs and next-character targets
    chunks = tokens.unfold(0, block_size + 1, block_size)
    return TensorDataset(chunks[:, :-1].contiguous(), chunks[:, 1:].contiguous())


class CharLMDataModule(SplitDataModule):
    """Next-character prediction on the ``pydoc_data.topics`` text (about 465k characters on CPython 3.11).

    The text is split into three contiguous parts (train, then validation, then test), so held-out text never
    overlaps training text. Each part is cut into windows of ``block_size`` input characters; batches are
    ``(inputs, targets)`` of shape ``(batch, block_size)`` with targets shifted by one character.

    Args:
        block_size: Characters per training sequence (the model's context length must be at least this).
        val_fraction: Fraction of the text held out for validation.
        test_fraction: Fraction of the text held out for testing.
        max_chars: Use only the first ``max_chars`` characters (small runs and tests); ``None`` uses all.
        batch_size: Batch size of every dataloader.
        num_workers: Dataloader worker processes.

    Raises:
        ValueError: If ``block_size`` < 1, a fraction is out of range, or a part is shorter than one window.

    Example::

        dm = CharLMDataModule(block_size=64, batch_size=32)
        dm.setup("fit")
        inputs, targets = next(iter(dm.train_dataloader()))  # (32, 64), (32, 64)
    """

    def __init__(
        self,
        block_size: int = 64,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        max_chars: int | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        if block_size < 1:
            raise ValueError(f"`block_size` must be at least 1, got {block_size}.")
        for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 < fraction < 1.0:
                raise ValueError(f"`{name}` must be strictly between 0 and 1, got {fraction}.")
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(f"`val_fraction` + `test_fraction` must be below 1, got {val_fraction} + {test_fraction}.")
        if max_chars is not None and max_chars < 1:
            raise ValueError(f"`max_chars` must be positive or None (whole text), got {max_chars}.")
        self.save_hyperparameters()
        self.block_size = block_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.max_chars = max_chars
        self.vocab_size = len(VOCABULARY)

    def setup(self, stage: str) -> None:
        if self.train_set is not None:
            return
        tokens = encode(load_corpus()[: self.max_chars])
        num_val, num_test = round(len(tokens) * self.val_fraction), round(len(tokens) * self.test_fraction)
        num_train = len(tokens) - num_val - num_test
        parts = {
            "train": tokens[:num_train],
            "val": tokens[num_train : num_train + num_val],
            "test": tokens[num_train + num_val :],
        }
        for name, part in parts.items():
            if len(part) < self.block_size + 1:
                raise ValueError(
                    f"The {name} part has {len(part)} characters, fewer than one window of block_size + 1 ="
                    f" {self.block_size + 1}. Increase `max_chars` (now {self.max_chars}) or the fractions,"
                    " or decrease `block_size`."
                )
        self.train_set, self.val_set, self.test_set = (_windows(part, self.block_size) for part in parts.values())


class CharTransformer(ClassificationModule):
    """A small decoder-only (causal) transformer that predicts the next character.

    Token + learned position embeddings, ``n_layer`` ``nn.TransformerEncoderLayer`` blocks with a causal mask and
    a linear head. Pre-norm blocks (``norm_first=True``, the default: ``x + f(LayerNorm(x))``, as GPT-2) are
    followed by a final ``LayerNorm``; post-norm blocks (``norm_first=False``: ``LayerNorm(x + f(x))``, the
    original Transformer's) already end in one, so none is added. Post-norm is the variant that needs a learning-rate
    warmup at high learning rates (measured in ``benchmarks/RESULTS.md``). Besides the shared classification metrics
    (``*_loss``, ``*_acc`` = next-character accuracy) it logs ``val_ppl``/``test_ppl`` (perplexity).

    Args:
        vocab_size: Number of characters; must cover the data's vocabulary (96 for :class:`CharLMDataModule`).
        block_size: Longest context the model accepts (size of the position embedding).
        d_model: Embedding width.
        n_layer: Number of transformer blocks.
        n_head: Attention heads per block; must divide ``d_model``.
        dropout: Dropout inside the blocks.
        lr: Learning rate of the default optimizer (AdamW).
        weight_decay: Weight decay of the default optimizer.
        norm_first: ``True`` for pre-norm blocks, ``False`` for post-norm blocks.

    Raises:
        ValueError: If a size is not positive, ``n_head`` does not divide ``d_model``, ``dropout`` is
            outside [0, 1) or ``norm_first`` is not a bool.

    Example::

        model = CharTransformer(block_size=64, d_model=64, n_layer=2, n_head=4)
        logits = model(torch.randint(0, 96, (2, 64)))  # (2, 64, 96)
        post_norm = CharTransformer(n_layer=6, norm_first=False)  # the original Transformer's blocks
    """

    def __init__(
        self,
        vocab_size: int = len(VOCABULARY),
        block_size: int = 64,
        d_model: int = 128,
        n_layer: int = 2,
        n_head: int = 4,
        dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        norm_first: bool = True,
    ) -> None:
        super().__init__(num_classes=vocab_size, lr=lr, weight_decay=weight_decay)
        for name, value in (("block_size", block_size), ("d_model", d_model), ("n_layer", n_layer), ("n_head", n_head)):
            if value < 1:
                raise ValueError(f"`{name}` must be at least 1, got {value}.")
        if d_model % n_head:
            raise ValueError(f"`n_head` must divide `d_model`, got d_model={d_model} and n_head={n_head}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}.")
        if not isinstance(norm_first, bool):
            raise ValueError(
                f"`norm_first` must be a bool (True: pre-norm blocks, False: post-norm blocks), got {norm_first!r}."
            )
        self.save_hyperparameters()
        self.block_size = block_size
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(block_size, d_model)
        block = nn.TransformerEncoderLayer(
            d_model, n_head, dim_feedforward=4 * d_model, dropout=dropout, batch_first=True, norm_first=norm_first
        )
        # nested tensors only speed up padded batches; they do not support pre-norm blocks anyway
        self.blocks = nn.TransformerEncoder(block, n_layer, enable_nested_tensor=False)
        # a post-norm block's output is already layer-normalized
        self.final_norm: nn.Module = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.head = nn.Linear(d_model, vocab_size)
        self.val_ppl = Perplexity()
        self.test_ppl = Perplexity()

    def forward(self, tokens: Tensor) -> Tensor:
        """Maps character indices ``(batch, length)`` to next-character logits ``(batch, length, vocab_size)``.

        Raises:
            ValueError: If ``length`` exceeds ``block_size``.
        """
        length = tokens.size(1)
        if length > self.block_size:
            raise ValueError(
                f"Sequences of {length} characters exceed the model's block_size={self.block_size};"
                " set the model's `block_size` to at least the data's."
            )
        positions = torch.arange(length, device=tokens.device)
        hidden = self.token_embedding(tokens) + self.position_embedding(positions)
        causal_mask = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device)
        hidden = self.blocks(hidden, mask=causal_mask, is_causal=True)
        return self.head(self.final_norm(hidden))

    def _log_metrics(self, stage: str, loss: Tensor, logits: Tensor, targets: Tensor) -> None:
        super()._log_metrics(stage, loss, logits, targets)
        if stage == "train":
            return
        perplexity: Perplexity = getattr(self, f"{stage}_ppl")
        # Perplexity expects (batch, sequence, vocab); the flattened positions form one long sequence
        perplexity(logits.unsqueeze(0), targets.unsqueeze(0))
        self.log(f"{stage}_ppl", perplexity, on_step=False, on_epoch=True, sync_dist=True)
