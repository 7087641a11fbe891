"""The online entrypoint: gunicorn + Flask on the SageMaker serving contract."""
