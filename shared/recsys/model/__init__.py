"""The Keras autoencoder, its loss and its training loop; imported by training code only."""
