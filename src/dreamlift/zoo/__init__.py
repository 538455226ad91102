"""The model zoo: small models trained on the world, saved in the formats of the real ones.

``tokenizer`` and ``tiny`` build the components (a word-level CLIP tokenizer, randomly
initialised diffusers pipelines of the real architectures); the registry that maps zoo names
to folders lives in ``dreamlift.zoo.registry``.
"""
