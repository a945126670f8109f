"""The ducksheet server. Importing it gives the pure protocol layer its SQL parser."""

from protocol.conditions import use_sql_parser
from server.store.sql_parser import serialize_sql

use_sql_parser(serialize_sql)
