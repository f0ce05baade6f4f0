"""TrainConfig.refit: after validation has chosen the epoch count (and the item kind's
fold-in λ, and the ranking weight), the served weights are trained again on all of train,
and nothing of the test part enters."""

import numpy as np
import pytest

from recsys.errors import InvalidArgument
from recsys.model.config import PRESETS, TrainConfig
from tests.conftest import TINY_ITEM, TINY_TRAINING


@pytest.fixture(scope="module")
def source(synthetic_dir):
    from recsys.pipeline import find_data

    return find_data(synthetic_dir, download=None)


def scored_with_captured_refit(source, config, monkeypatch):
    """train_and_score with `config`, and the ratings its kind's refit was handed."""
    from recsys.model.registry import get_kind
    from recsys.pipeline import train_and_score

    kind = get_kind(config.kind)
    handed = []
    real_refit = type(kind).refit

    def refit(self, train, chosen, **kwargs):
        handed.append((train, chosen))
        return real_refit(self, train, chosen, **kwargs)

    monkeypatch.setattr(type(kind), "refit", refit)
    return train_and_score(source, config), handed


@pytest.mark.slow
def test_the_user_kind_refits_on_train_for_the_chosen_epochs(source, monkeypatch):
    from recsys.model.training import items_and_normalization
    from recsys.model.user.training import train_user_autoencoder

    config = PRESETS["user"].replace(**TINY_TRAINING, refit=True)
    scored, handed = scored_with_captured_refit(source, config, monkeypatch)
    (train, chosen), split, trained = handed[0], scored.split, scored.trained
    assert len(train) == len(split.train) == len(split.fit) + len(split.validation)
    assert scored.leaked_pairs == 0
    refit = trained.metadata["refit"]
    assert refit["epochs"] == chosen.best_epoch == trained.best_epoch
    assert len(refit["loss"]) == chosen.best_epoch
    assert refit["training_ratings"] == len(split.train)
    # What serves is the refit: its μ and b_i are those of train, not of the fit part.
    _, on_train = items_and_normalization(split.train, config)
    assert trained.normalization.global_mean == pytest.approx(on_train.global_mean)
    assert trained.normalization.global_mean != pytest.approx(chosen.normalization.global_mean)
    # ... and the same weights as training train directly for that many epochs.
    direct = train_user_autoencoder(
        split.train, None, config, rating_scale=(1.0, 5.0), epochs=chosen.best_epoch
    )
    np.testing.assert_array_equal(trained.network.decoder_kernel, direct.network.decoder_kernel)
    # Validation chose; its figures are the chosen run's.
    assert trained.validation_rmse == chosen.validation_rmse
    assert scored.ranking.ranking.weights.shape == (len(trained.index), len(trained.index))


@pytest.mark.slow
def test_the_item_kind_keeps_its_fold_in_chosen_on_validation(source, monkeypatch):
    config = PRESETS["item"].replace(**TINY_ITEM, refit=True)
    scored, handed = scored_with_captured_refit(source, config, monkeypatch)
    (_, chosen), trained = handed[0], scored.trained
    assert trained.network.fold_in_l2 == chosen.network.fold_in_l2
    assert trained.metadata["fold_in"] == chosen.metadata["fold_in"]  # the validation scores
    assert trained.metadata["refit"]["epochs"] == chosen.best_epoch
    assert not np.array_equal(trained.network.item_codes, chosen.network.item_codes)
    assert scored.leaked_pairs == 0


@pytest.mark.slow
def test_a_saved_refit_says_what_it_was_trained_on(source, tmp_path):
    from recsys.artifacts import load_artifact
    from recsys.data.split import split_ratings
    from recsys.pipeline import train_and_evaluate

    config = PRESETS["user"].replace(**{**TINY_TRAINING, "max_epochs": 4}, refit=True)
    run = train_and_evaluate(source, config, tmp_path)
    metadata = load_artifact(run.artifact_path).metadata
    split = split_ratings(source.data.ratings, seed=0)
    assert metadata["dataset"]["training_ratings"] == len(split.train)
    assert metadata["refit"]["training_ratings"] == len(split.train)
    assert metadata["training"]["best_epoch"] == metadata["refit"]["epochs"]


@pytest.mark.parametrize(
    "change",
    [{"refit": True, "early_stopping": "loss"}, {"refit": "yes"}],
)
def test_bad_refit_settings_name_the_field(change):
    with pytest.raises(InvalidArgument) as caught:
        TrainConfig(**change)
    assert caught.value.field == "refit"
