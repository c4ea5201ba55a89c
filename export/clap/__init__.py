"""LAION-CLAP (HTSAT audio encoder + RoBERTa text encoder), the second model family.

``reference`` loads the truth (transformers' ``ClapModel`` and ``ClapFeatureExtractor``),
``laion`` maps LAION's original ``.pt`` checkpoints onto it, ``frontend`` and ``graphs``
build the exportable towers, ``demo`` writes a random-weight model folder, and ``family``
plugs them into the exporter (``export.families``).
"""
