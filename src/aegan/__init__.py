"""aegan: does fusing an autoencoder into a GAN help, and which way of fusing wins?"""

__version__ = "0.1.0"
