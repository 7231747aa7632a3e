#!/usr/bin/env python3
"""Copy the PVE permission rules of the endpoints autovibe calls into ``autovibe.cluster``.

Usage (from the repository root)::

    python scripts/gen_privileges.py [--schema SCHEMA_JSON] [--out FILE]

SCHEMA_JSON defaults to the simulator's trimmed PVE 8.4 schema
(``src/autovibe/sim/schema_data/pve-8.4.json``, itself made by ``scripts/gen_sim_schema.py``), FILE to
``src/autovibe/cluster/privileges_data.json``. The endpoints are ``USED_ENDPOINTS`` and
``ADMIN_ENDPOINTS`` of ``autovibe.cluster.privileges``; for each the file keeps ``permissions`` and
``allowtoken``. ``autovibe.cluster`` may not import the simulator, hence this copy. The output is
deterministic; ``tests/unit/cluster/test_privileges.py`` checks the shipped file is up to date. Run it
after changing either table or regenerating the schema.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from autovibe.cluster.privileges import ADMIN_ENDPOINTS, DATA_FILE, USED_ENDPOINTS  # noqa: E402

SCHEMA_DIR = REPO / "src" / "autovibe" / "sim" / "schema_data"
DEFAULT_SCHEMA = SCHEMA_DIR / "pve-8.4.json"
DEFAULT_OUT = REPO / "src" / "autovibe" / "cluster" / DATA_FILE


def load_schema(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    data: dict[str, Any] = json.loads(raw)
    return data


def build(schema: dict[str, Any], source: str) -> dict[str, Any]:
    """The data file's content: the rules of every listed endpoint, by ``"METHOD /path"``."""
    index = {f"{e['method']} {e['path']}": e for e in schema["endpoints"]}
    wanted = sorted({use.key for use in (*USED_ENDPOINTS, *ADMIN_ENDPOINTS)})
    missing = [key for key in wanted if key not in index]
    if missing:
        raise SystemExit(f"not in the PVE schema (typo in the tables?): {', '.join(missing)}")
    return {
        "meta": {
            "source": source,
            "apidoc_sha256": schema.get("meta", {}).get("source_sha256"),
            "generator": "scripts/gen_privileges.py",
        },
        "endpoints": {
            key: {
                "allowtoken": bool(index[key].get("allowtoken", True)),
                "permissions": index[key]["permissions"],
            }
            for key in wanted
        },
    }


def render(data: dict[str, Any]) -> str:
    """One endpoint per line, keys sorted: small diffs when a table or the schema changes."""
    lines = [
        f"{json.dumps(key)}: {json.dumps(entry, sort_keys=True)}" for key, entry in data["endpoints"].items()
    ]
    meta = json.dumps(data["meta"], sort_keys=True)
    return '{"meta": ' + meta + ',\n"endpoints": {\n' + ",\n".join(lines) + "\n}}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schema", type=Path, default=DEFAULT_SCHEMA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    schema_path: Path = args.schema
    try:
        source = str(schema_path.resolve().relative_to(REPO))
    except ValueError:
        source = schema_path.name
    text = render(build(load_schema(schema_path), source))
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
