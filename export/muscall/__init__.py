"""MusCALL (Manco et al., ISMIR 2022), the third model family: a CLIP-style ModifiedResNet
over a torchaudio-recipe log-mel (16 kHz, 20-s input) and a small causal text transformer
over CLIP's BPE vocabulary, in one joint space.

``config`` reads a run's ``config.yaml``, ``frontend`` computes the log-mel (as the reference
and as the graph do), ``text_encoder`` is the text tower, ``reference`` loads a run's
checkpoint into the PyTorch truth, ``tokenizer`` builds ``tokenizer.json`` from CLIP's
vocabulary files, ``graphs`` builds the exportable towers, ``demo`` writes a random-weight
run. Written from the description of what MusCALL computes (docs/models.md, "MusCALL"), not
from its code.
"""
