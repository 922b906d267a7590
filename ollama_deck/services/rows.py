"""What every read of an operation returns: its columns and how many log lines it keeps.

The count is what the page shows as "Log (N)" before it has read the log. It is computed
by the same statement that reads (or, with RETURNING, writes) the row, so no path that
renders an operation (API answers, events, replays) lacks it and no extra query is made.
"""

from __future__ import annotations

from sqlalchemy import func
from sqlalchemy import select

from ..db import Operation
from ..db import OperationLog
from ..db import table_of

OP = table_of(Operation)
LOG = table_of(OperationLog)

LOG_COUNT = (
    select(func.count())
    .select_from(LOG)
    .where(LOG.c.operation_id == OP.c.id)
    .correlate(OP)
    .scalar_subquery()
    .label("log_count")
)
# select(*OPERATION_ROW) or .returning(*OPERATION_ROW): the row as serializers render it.
OPERATION_ROW = (*OP.c, LOG_COUNT)
