"""Unsupervised training of attribution encoders (alignment + Infomax), export, evaluation, calibration.

Imports run one way: training -> core, common. Nothing in core, app or worker imports this package."""
