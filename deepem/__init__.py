"""DeepEM particle picking: a fully convolutional reimplementation of Zhu, Ouyang & Mao (2017)."""

__version__ = "0.12.3"
