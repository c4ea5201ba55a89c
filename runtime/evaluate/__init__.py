"""Evaluation of a two-tower model: retrieval metrics on a catalog (``retrieval``), the
instrument triplet test (``triplets``) and zero-shot instrument recognition
(``instruments``), run by ``ttmr eval …`` (``commands``). Numpy only; matplotlib is imported
by ``plots`` alone."""
