"""Workflow graphs: the model and its topology (``model``), reading one from JSON (``parse``)
with its structural rules (``rules``), and comparing two (``drift`` for one block's
upstream, ``diff`` for the whole graph).

Import the leaf module (``from engine.graph.model import Graph``): this file re-exports
nothing, which keeps the import graph free of cycles through it.
"""
