"""Training on synthetic data with planted taste groups recovers the structure."""

import numpy as np
import pytest

from recsys.data.synthetic import item_group
from recsys.errors import InvalidArgument
from recsys.model.config import PRESETS, TrainConfig
from tests.conftest import SYNTHETIC


@pytest.mark.slow
def test_beats_the_bias_baseline_on_planted_structure(trained_run):
    _, run = trained_run
    scores = {s.name: s for s in run.scores}
    model, bias = scores["autoencoder"], scores["bias baseline"]
    assert model.rmse < bias.rmse - 0.05, (model.rmse, bias.rmse)
    assert bias.rmse < scores["global mean"].rmse
    assert model.ndcg_at_10 > bias.ndcg_at_10


@pytest.mark.slow
def test_similar_items_come_from_the_same_group(trained_run):
    from recsys.artifacts import load_artifact

    _, run = trained_run
    model = load_artifact(run.artifact_path).recommender
    same = []
    for item_id in model.index.item_ids[:40]:
        neighbours = model.similar(int(item_id), k=5)
        group = item_group(int(item_id), SYNTHETIC.n_groups)
        same += [item_group(n.item_id, SYNTHETIC.n_groups) == group for n in neighbours]
    assert np.mean(same) > 0.8, np.mean(same)


@pytest.mark.slow
def test_training_is_reproducible(synthetic_dir):
    from recsys.data.movielens import load_movielens
    from recsys.data.split import split_ratings
    from recsys.model.registry import train_autoencoder

    split = split_ratings(load_movielens(synthetic_dir).ratings)
    config = TrainConfig(encoding_size=4, max_epochs=3, optimizer="adam", learning_rate=1e-2)
    a = train_autoencoder(split.fit, None, config).network
    b = train_autoencoder(split.fit, None, config).network
    np.testing.assert_array_equal(a.decoder_kernel, b.decoder_kernel)


def test_presets():
    article = PRESETS["article"]
    assert (
        article.top_n,
        article.encoding_size,
        article.optimizer,
        article.learning_rate,
        article.batch_size,
        article.hide_fraction,
        article.hidden_weight,
        article.early_stopping,
        article.patience,
        article.min_delta,
        article.max_epochs,
    ) == (500, 25, "adadelta", 1.0, 125, 0.2, 0.8, "loss", 3, 1e-5, 100)
    user = PRESETS["user"]
    assert user.top_n is None and user.min_ratings is None
    assert user.early_stopping == "validation" and user.refit
    assert TrainConfig.from_dict(user.to_dict()) == user
    deep = PRESETS["deep"]
    assert (deep.hidden_layers, deep.activation, deep.input_dropout) == ((256,), "selu", 0.2)
    assert deep.replace(hidden_layers=(), activation="linear", input_dropout=0.0) == user
    assert TrainConfig.from_dict(deep.to_dict()) == deep
    blend = PRESETS["blend"]
    assert (blend.kind, blend.components, blend.refit) == ("blend", ("user", "item"), True)
    assert TrainConfig.from_dict(blend.to_dict()) == blend
    # what trains unless told otherwise is one of the named presets
    assert any(PRESETS["default"] is PRESETS[name] for name in ("user", "item", "blend"))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"encoding_size": 0}, "encoding_size"),
        ({"hide_fraction": 1.0}, "hide_fraction"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"early_stopping": "never"}, "early_stopping"),
    ],
)
def test_bad_settings_name_the_field(change, field):
    with pytest.raises(InvalidArgument) as caught:
        TrainConfig(**change)
    assert caught.value.field == field
