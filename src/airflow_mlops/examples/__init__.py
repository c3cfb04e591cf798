"""What the project ships to show itself, outside the provider's core: the demo and the example data.

``fraud`` is a seeded synthetic card-transaction generator with knobs for data and concept drift;
``tickets`` a seeded generator of support tickets routed to one of four queues (string classes, a queue
mix drifting over time); ``datasets`` writes the example models' data (``airflow-mlops
make-example-data``); ``demo`` runs the whole loop on embedded defaults (``make demo``);
``tickets_demo`` trains and gates the multiclass example with its train DAG (``make demo-tickets``).
Nothing in the core imports this package.
"""
