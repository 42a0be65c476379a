"""DCB on LMDB stores: tags, the DCB index, conditions in the leader's planning."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lmdb
import pytest

from esdb.contracts.commands import DcbItem
from esdb.shared.storage.catalog import Catalog, lmdb_catalog
from esdb.shared.storage.lmdb_store import LmdbStore
from esdb.shared.storage.port import ITEM_TABLES
from tests.builders import create_store
from tests.dcb_contract import DcbContract, DcbModelContract

MAP_SIZE = 64 << 20


class TestLmdbDcb(DcbContract):
    @pytest.fixture
    def catalog(self, tmp_path: Path) -> Iterator[Catalog]:
        catalog = lmdb_catalog(tmp_path, map_size=MAP_SIZE)
        create_store(catalog)
        yield catalog
        catalog.close()


class TestLmdbDcbModel(DcbModelContract):
    @contextmanager
    def fresh_catalog(self) -> Iterator[Catalog]:
        with tempfile.TemporaryDirectory(prefix="esdb-dcb-model-") as tmp:
            catalog = lmdb_catalog(Path(tmp), map_size=MAP_SIZE)
            create_store(catalog)
            try:
                yield catalog
            finally:
                catalog.close()


_WRITER = textwrap.dedent(
    f"""
    import sys
    from pathlib import Path
    from esdb.shared.storage.lmdb_store import LmdbStore
    from tests.builders import record
    writer = LmdbStore(Path(sys.argv[1]), map_size={MAP_SIZE})
    with writer.transaction(1) as txn:
        txn.put_event(record("$dcb", 0, 1, type="Tagged"))
        txn.index_dcb(1, "Tagged", ("t",))
    writer.close()
    """
)


def test_a_store_from_before_dcb_is_read_before_and_after_its_writer_upgrades_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store"
    old = lmdb.open(str(path), max_dbs=16, map_size=MAP_SIZE)
    tables = ("events", "streams", "stream_meta", "event_ids", "meta", *ITEM_TABLES)
    for name in tables:  # every table but the DCB index
        old.open_db(name.encode())
    old.close()
    reader = LmdbStore(path, readonly=True, map_size=MAP_SIZE)
    try:
        assert reader.dcb_read((), None, backward=False, limit=10) == ([], 0)
        # The writer, in a process of its own (LMDB opens a path once per process), creates
        # the DCB index table when it opens the store.
        subprocess.run([sys.executable, "-c", _WRITER, str(path)], check=True, timeout=60)
        found, head = reader.dcb_read((DcbItem(tags=("t",)),), None, backward=False, limit=10)
        assert ([r.position for r in found], head) == ([1], 1)
    finally:
        reader.close()
