"""A stand-in task for the study runner's tests (``python -m study_fake_task fit ...``, with ``tests/common`` on
``PYTHONPATH``): no training, only what the runner looks at."""
