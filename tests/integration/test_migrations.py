"""Each service's migrations build exactly the tables its models describe, on both backends."""

import pytest
from alembic import command

from shared.config import SERVICES, database_url
from shared.db import migrations_config


@pytest.mark.parametrize("service", SERVICES)
def test_the_newest_migration_matches_the_models(migrated, service):
    command.check(migrations_config(service, database_url(service)))  # raises if autogenerate finds a difference
