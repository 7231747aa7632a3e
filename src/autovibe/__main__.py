"""``python -m autovibe``: the same CLI as the ``autovibe`` console script."""

from autovibe.cli.main import main

raise SystemExit(main())
