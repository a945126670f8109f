"""The ducksheet server. Importing it gives the pure protocol layer its SQL parser, and
keeps numpy from asking for transparent huge pages (before numpy is first imported)."""

import os

# numpy madvises every array of 4 MB and more for huge pages. Where the kernel then
# faults and compacts them synchronously (THP "madvise", as here), a 5,000-cell paste's
# decide, which allocates dozens of 7 MB arrays, spent 80-200 ms of system time in
# every other request (decide ~300 ms against ~170). An operator's own setting wins.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

from protocol.conditions import use_sql_parser
from server.store.sql_parser import serialize_sql

use_sql_parser(serialize_sql)
