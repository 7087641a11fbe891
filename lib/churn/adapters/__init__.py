"""Adapters: thin classes that talk to MongoDB, object storage, MLflow and the Pushgateway.

Each takes its client in the constructor; the pure core never imports them."""
