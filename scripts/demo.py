"""`make demo`: the hook end to end against the bundled Emedgene simulator.

Starts the simulator, points the ``emedgene_default`` connection at it, and walks one case through
its life with :class:`EmedgeneHook`: test the connection, list storage, validate and create the
trio case from ``dags_examples/cases/``, wait for delivery, fetch candidates and the export, and
write the export to a JSON file whose path it prints.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_HOME = Path(os.environ.get("DEMO_HOME", ROOT / ".demo")).resolve()
os.environ.setdefault("AIRFLOW_HOME", str(DEMO_HOME / "airflow_home"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


def main() -> int:
    from emedgene_provider.client import status as lifecycle
    from emedgene_provider.hooks.emedgene import EmedgeneHook
    from emedgene_provider.testing import EmedgeneSimulator

    case = json.loads((ROOT / "dags_examples" / "cases" / "trio-exome-vcf.json").read_text())
    with EmedgeneSimulator(stage_seconds=1.0) as sim:
        print(f"Simulator: {sim.url}")
        os.environ["AIRFLOW_CONN_EMEDGENE_DEFAULT"] = json.dumps(sim.connection_json())
        hook = EmedgeneHook()
        ok, message = hook.test_connection()
        print(f"test_connection: {ok} - {message}")
        if not ok:
            return 1
        print(f"storage providers: {[p.get('name') for p in hook.list_storage_providers()]}")
        hook.validate_case(case)
        name = hook.create_case(case)
        print(f"created case {name}")
        deadline = time.monotonic() + 120
        status = hook.get_case_status(name)
        while not lifecycle.has_reached(status, lifecycle.DELIVERED):
            if lifecycle.is_failure(status) or time.monotonic() > deadline:
                print(f"case {name} ended in {status!r}", file=sys.stderr)
                return 1
            print(f"  {name}: {status}")
            time.sleep(0.5)
            status = hook.get_case_status(name)
        print(f"  {name}: {status}")
        candidates = hook.get_candidates(name)
        export = hook.export_case(name)
        out_dir = DEMO_HOME / "exports"
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=out_dir, delete=False, suffix=".tmp") as tmp:
            json.dump(export, tmp, indent=1)
        out = out_dir / f"{name}.json"
        os.replace(tmp.name, out)
        print(f"{len(candidates)} candidates; export of {len(export)} variants written to {out}")
        print(f"cases in the tenant: {sum(1 for _ in hook.iter_cases(page_size=10))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
