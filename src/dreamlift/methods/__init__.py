"""Methods: thin compositions of fields, priors and guidance that own a schedule.

One package per method (``generate/``, ``reconstruct/``, ``handles/``; ``sample`` and
``world_render`` are single modules): its typed config, a step that reads top to bottom
(the loop body), and ``run`` (the run folder around the shared loop). The run glue they
share lives once in ``common/``: run folders and ``--resume``, typed settings from files and
``--set``, priors and prompts, weighted loss terms, turntable and 3D outputs. A method never
imports another method.
"""
