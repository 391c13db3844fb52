"""Offline training of custom weights: datasets, dataset builder, training loop, evaluation.

Imports the core library (blender_occnet.occnet), never the add-on.
"""
