"""Customer-churn prediction: the core package (schema, model, scoring, adapters)."""
