"""The shipped variant recipes (``full.toml``, ``balanced.toml``, ``test-oriented.toml``).

A package only so the TOML files ship with the wheel; read them with
:func:`curation.variants.load_recipes`.
"""
