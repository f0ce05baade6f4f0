"""The model kinds, one package each (user/, item/), behind one interface (kind.py) and one
registry (registry.py); the typed training settings (config.py) and what every kind's
training shares (training.py, batches.py). A kind's NumPy serving form (its network.py)
imports no Keras; its Keras model and training do."""
