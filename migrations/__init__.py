"""Numbered, frozen schema steps for the registry database and the runner that applies them.

Each step lives in ``NNNN_slug.py`` and defines ``apply(connection)`` using plain SQL on a
:class:`sqlite3.Connection`. Steps never import the app's models: they describe the schema as it
was when they were written, so that an old database can always be brought forward.
"""
