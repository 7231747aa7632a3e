"""The ``autovibe`` command line: a thin face over the services (DESIGN §2).

``main.py`` is the root app and loads each command group only when it runs; ``render.py`` is the only
module that prints; ``errors.py`` maps error kinds to exit codes.
"""
