"""The AV-CPNet baseline of the eMotions toolkit: model, EP-CE, feature cache, training, evaluation.

Modules (import them by their full names; nothing heavy is imported here):
``model.avcpnet`` (the network and its builder), ``model.visual``, ``model.audio``, ``model.fusion``,
``model.loss`` (EP-CE), ``model.labels``, ``model.features`` (decoding and the cache),
``model.data`` (datasets), ``model.export_reader``, ``model.release`` (import-release),
``model.train`` (``main``, ``train_one_epoch``, ``evaluate``), ``model.metrics``, ``model.checkpoints``.
"""

__all__: list[str] = []
