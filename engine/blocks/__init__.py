"""Block types: one module per type behind one interface (engine.blocks.base.BlockKind).

A kind says what a block needs and gives (its handles, from its config), how its config
is checked, how it executes, and how the engine treats it (does it call a model, fan
out, wait for an answer, end a turn...). Code elsewhere asks ``kind_of(block.type)``
(engine.blocks.registry) instead of comparing type strings. To add a block type: a module
here with a ``BlockKind`` subclass, listed in ``registry.KINDS``.
"""
