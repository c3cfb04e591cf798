"""What the project ships to show itself, outside the provider's core: the demo and the example data.

``fraud`` is a seeded synthetic card-transaction generator with knobs for data and concept drift;
``datasets`` writes the example models' data (``airflow-mlops make-example-data``); ``demo`` runs
the whole loop on embedded defaults (``make demo``). Nothing in the core imports this package.
"""
