"""What the user and item autoencoders' training sequences share: the rows of a CSR matrix
in batches, reshuffled every epoch, only `batch_size` rows dense at once."""

from __future__ import annotations

import math

import keras
import numpy as np
import scipy.sparse as sp


class ShuffledRowBatches(keras.utils.PyDataset):
    """`matrix` as float32, its rows in a random `order` drawn from `rng` (seeded), drawn
    again after every epoch. Subclasses build a batch from `rows(index)`."""

    def __init__(self, matrix: sp.csr_matrix, batch_size: int, seed: int):
        super().__init__(workers=1, use_multiprocessing=False)
        self.matrix = matrix.astype(np.float32)
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(matrix.shape[0])

    def __len__(self) -> int:
        return math.ceil(self.matrix.shape[0] / self.batch_size)

    def rows(self, index: int) -> np.ndarray:
        """The row numbers of batch `index`."""
        return self.order[index * self.batch_size : (index + 1) * self.batch_size]

    def on_epoch_end(self):
        self.order = self.rng.permutation(self.matrix.shape[0])
