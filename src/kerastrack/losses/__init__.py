"""Losses that Keras does not ship (``custom``) and the optimizer lab's 2-D surfaces as losses
of a position (``surfaces``)."""

from kerastrack.losses.custom import MulticlassSVM, OnlineLinear, signed_accuracy

__all__ = ["MulticlassSVM", "OnlineLinear", "signed_accuracy"]
