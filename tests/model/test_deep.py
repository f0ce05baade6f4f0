"""The deeper autoencoder (hidden layers, SELU, input dropout): its NumPy kernel equals Keras,
it survives a save → load round trip, and it is served by the model service unchanged."""

import keras
import numpy as np
import pytest

from recsys.activations import activate
from recsys.artifacts import load_artifact
from recsys.errors import InvalidArgument
from recsys.model.config import TrainConfig
from recsys.model.user.keras_model import build_for, network_of
from recsys.model.user.network import DeepAutoencoder, DenseLayer, LinearAutoencoder


def test_selu_and_elu_match_keras():
    values = np.linspace(-6, 6, 121, dtype=np.float32)
    for name in ("selu", "elu", "relu", "tanh", "linear"):
        expected = keras.ops.convert_to_numpy(keras.activations.get(name)(values))
        np.testing.assert_allclose(activate(values, name), expected, rtol=1e-6, atol=1e-6)
    # SELU by hand: scale × x above 0, scale × α (e^x − 1) below
    assert activate(np.array([1.0, -1.0], np.float32), "selu") == pytest.approx(
        [1.0507010, 1.0507010 * 1.6732632 * (np.exp(-1) - 1)], rel=1e-6
    )


def test_deep_kernel_by_hand():
    # 2 items → 1 hidden (relu, bias -1) → code (linear) → output; item embeddings are the
    # output kernel's columns
    network = DeepAutoencoder(
        (DenseLayer(np.array([[1.0], [1.0]], np.float32), np.array([-1.0], np.float32), "relu"),),
        (
            DenseLayer(
                np.array([[2.0, -3.0]], np.float32), np.array([0.5, 0.0], np.float32), "linear"
            ),
        ),
    )
    # x = [2, 1]: hidden = relu(3 - 1) = 2; output = 2 × [2, -3] + [0.5, 0] = [4.5, -6]
    np.testing.assert_allclose(network.predict(np.array([[2.0, 1.0]], np.float32)), [[4.5, -6.0]])
    np.testing.assert_allclose(
        network.predict_pairs(np.array([[2.0, 1.0]], np.float32), np.array([0]), np.array([1])),
        [-6.0],
    )
    assert network.item_embeddings.shape == (2, 1)
    with pytest.raises(ValueError, match="linear"):
        DeepAutoencoder(network.encoder, (DenseLayer(network.decoder[0].kernel, None, "selu"),))


@pytest.mark.parametrize(
    "settings",
    [
        {"hidden_layers": [6, 5], "activation": "selu", "input_dropout": 0.3},
        {"activation": "elu"},
        {"hidden_layers": [7]},  # linear activations, but with biases: still "deep"
    ],
)
def test_numpy_kernel_equals_keras(settings):
    model = build_for(TrainConfig(encoding_size=3, **settings), 12)
    rng = np.random.default_rng(1)
    for weight in model.weights:  # non-zero biases, so the test sees them
        weight.assign(rng.normal(0, 0.5, weight.shape).astype(np.float32))
    network = network_of(model)
    assert isinstance(network, DeepAutoencoder)
    users = rng.normal(0, 1, (4, 12)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(model(users, training=False))
    np.testing.assert_allclose(network.predict(users), expected, rtol=1e-5, atol=1e-5)
    rows, columns = np.array([0, 3, 3]), np.array([11, 0, 5])
    np.testing.assert_allclose(
        network.predict_pairs(users, rows, columns), expected[rows, columns], rtol=1e-5, atol=1e-5
    )


def test_article_shape_stays_linear():
    network = network_of(build_for(TrainConfig(encoding_size=3), 12))
    assert isinstance(network, LinearAutoencoder)
    assert network.depth == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hidden_layers": [0]}, "hidden_layers"),
        ({"hidden_layers": "wide"}, "hidden_layers"),
        ({"activation": "swish"}, "activation"),
        ({"input_dropout": 1.0}, "input_dropout"),
    ],
)
def test_bad_deep_settings_name_the_field(change, field):
    with pytest.raises(InvalidArgument) as caught:
        TrainConfig(**change)
    assert caught.value.field == field


def test_deep_settings_round_trip_as_json():
    config = TrainConfig(hidden_layers=[256, 128], activation="selu", input_dropout=0.2)
    assert config.hidden_layers == (256, 128)
    assert config.to_dict()["hidden_layers"] == [256, 128]
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig(hidden_layers=64).hidden_layers == (64,)


@pytest.mark.slow
def test_deep_round_trip_gives_keras_predictions(trained_deep_run):
    _, run = trained_deep_run
    artifact = load_artifact(run.artifact_path)
    network = artifact.recommender.network
    assert isinstance(network, DeepAutoencoder) and network.depth == 2
    rng = np.random.default_rng(0)
    users = rng.normal(0, 1, (5, network.n_items)).astype(np.float32)
    users[rng.random(users.shape) < 0.8] = 0
    reloaded = keras.saving.load_model(run.artifact_path / "model.keras", safe_mode=True)
    expected = keras.ops.convert_to_numpy(reloaded(users))
    np.testing.assert_allclose(network.predict(users), expected, rtol=1e-4, atol=1e-5)
    # SimilarItems uses the last decoder layer's item columns
    output_kernel = keras.ops.convert_to_numpy(
        reloaded.get_layer("decoder").get_layer("item_embeddings").kernel
    )
    np.testing.assert_array_equal(network.item_embeddings, output_kernel.T)


@pytest.mark.slow
def test_deep_model_learns_the_planted_structure(trained_deep_run):
    _, run = trained_deep_run
    scores = {s.name: s for s in run.scores}
    assert scores["autoencoder"].rmse < scores["bias baseline"].rmse - 0.05


def test_article_network_keeps_its_seeded_initialization():
    # The decoder's layer is created before the encoder's, as the article's network always
    # was: the same seed gives the same initial kernels as that construction by hand.
    keras.utils.set_random_seed(3)
    built = build_for(TrainConfig(encoding_size=3), 12)
    keras.utils.set_random_seed(3)
    decoder_layer = keras.layers.Dense(12, use_bias=False, name="item_embeddings")
    decoder_layer.build((None, 3))
    encoder_layer = keras.layers.Dense(3, use_bias=False, name="code")
    encoder_layer.build((None, 12))
    network = network_of(built)
    np.testing.assert_array_equal(
        network.decoder_kernel, keras.ops.convert_to_numpy(decoder_layer.kernel)
    )
    np.testing.assert_array_equal(
        network.encoder_kernel, keras.ops.convert_to_numpy(encoder_layer.kernel)
    )
