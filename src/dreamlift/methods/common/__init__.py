"""The run glue every method shares, defined once.

``folders``: a run folder is never written over without ``--resume``, and a resumed run
changes only what may change (:data:`~dreamlift.methods.common.folders.RESUMABLE`).
``config``: typed settings from YAML files, ``--set KEY=VALUE`` and saved ``config.yaml``s.
``priors``: the toy priors, the prompt check and prior loading. ``losses``: named, weighted
loss terms. ``outputs``: the run contract's files, the turntable and the field's 3D file(s).
"""
