"""Wait until a service's database is at the newest migration this image has, then exit 0.

The init container of every web and worker pod runs it (`python /opt/ccs/wait-for-migrations.py <service>`, from
the `ccs-scripts` ConfigMap), so that no pod serves or consumes before the `<service>-migrate` Job has run
`ccs migrate <service>`. It reads `<SERVICE>_DATABASE_URL` as the service does, checks every few seconds, and exits
1 after `--timeout` seconds (the pod then restarts it). It never prints the URL, which holds the password.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait before giving up (900)")
    parser.add_argument("--interval", type=float, default=3, help="seconds between checks (3)")
    args = parser.parse_args(argv)

    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from shared import config
    from shared.db import make_engine, migrations_config

    url = config.database_url(args.service)
    heads = set(ScriptDirectory.from_config(migrations_config(args.service, url)).get_heads())
    engine = make_engine(url)
    deadline = time.monotonic() + args.timeout
    try:
        while True:
            try:
                with engine.connect() as connection:
                    current = set(MigrationContext.configure(connection).get_current_heads())
            except Exception as err:  # not up yet, or refusing us: say what kind of failure, not where
                state = f"database not reachable ({type(err).__name__})"
            else:
                if current == heads:
                    print(f"{args.service}: database is at {', '.join(sorted(heads))}", flush=True)
                    return 0
                state = (f"database at {', '.join(sorted(current)) or 'no revision'}, "
                         f"waiting for {', '.join(sorted(heads))}")
            if time.monotonic() >= deadline:
                print(f"{args.service}: gave up after {args.timeout:g}s: {state}", file=sys.stderr, flush=True)
                return 1
            print(f"{args.service}: {state}", flush=True)
            time.sleep(args.interval)
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
