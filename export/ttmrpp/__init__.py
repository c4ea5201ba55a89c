"""TTMR++ (ResNet audio tower on a log-mel, RoBERTa text tower, 128-d joint space).

``reference`` loads the truth from the upstream ``.pth`` + ``.yaml`` (``hparams``,
``audio_tower``, ``frontend``), ``graphs`` builds the exportable towers, ``demo`` writes a
random-weight checkpoint, ``calibration`` feeds the static INT8 audio tower, and ``family``
plugs them into the exporter (``export.families``).
"""
