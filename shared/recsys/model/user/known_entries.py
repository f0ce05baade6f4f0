"""The user kind's training batches as the known entries of a batch of users (row, column,
value), so a batch costs O(its ratings), never (batch, n_items): each batch hides a fresh
random share of every user's known preferences, as the article's training does."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.model.batches import ShuffledRowBatches


class KnownEntryBatches(ShuffledRowBatches):
    """Batches of ((users, rows, columns, inputs), (targets, hidden, visible)) from a CSR
    matrix of user preferences; every array but `users` has one entry per known preference
    of the batch's users:

    - users: (n_users,) int32, the batch's rows of `matrix` (their count is what the model's
      code has rows and what Keras weights the batch's loss by, as it did the dense batch)
    - rows: (n,) int32, the entry's row in the batch (0 … n_users − 1)
    - columns: (n,) int32, its item column
    - inputs: (n,) float32, what the model sees: the preference, 0 where hidden, divided by
      1 − hide_fraction with `rescale` (inverted dropout, so a full vector at serving time
      has the scale the model was trained on)
    - targets: (n,) float32, the preference
    - hidden, visible: (n,) float32 masks of the hidden and of the still-visible entries

    Each call hides a fresh random `hide_fraction` of every known entry, so every epoch
    draws new masks. An entry stored with the value 0 is left out: the dense form could not
    tell it from an unknown one, and its input adds nothing."""

    def __init__(
        self,
        matrix: sp.csr_matrix,
        batch_size: int,
        hide_fraction: float,
        seed: int,
        rescale: bool = False,
    ):
        super().__init__(matrix, batch_size, seed)
        self.matrix.eliminate_zeros()
        self.input_scale = np.float32(1 / (1 - hide_fraction) if rescale else 1)
        self.hide_fraction = hide_fraction

    def __getitem__(self, index: int):
        users = self.rows(index)
        batch = self.matrix[users]
        rows = np.repeat(np.arange(len(users), dtype=np.int32), np.diff(batch.indptr))
        targets = batch.data
        hidden = self.rng.random(batch.nnz, dtype=np.float32) < self.hide_fraction
        visible = (~hidden).astype(np.float32)
        inputs = targets * visible * self.input_scale
        return (
            (users.astype(np.int32), rows, batch.indices.astype(np.int32), inputs),
            (targets, hidden.astype(np.float32), visible),
        )
