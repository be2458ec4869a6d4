"""What the ``totes`` command prints: the stages as they start and finish, progress of long reads
and copies, warnings and errors, for a person to read. Prefect's state chatter for every task run
("Finished in state Completed()"), each task's detail lines (they are in the Prefect UI, and the
command's report has the counts) and the libraries' connection chatter stay out unless ``totes -v``;
an expected refusal (a file quarantined) is one line, never a traceback; an alert is its subject.

A filter on the command's own log handler, which Prefect leaves in place (it adds its console
handler only to a root logger that has none): every line still reaches the Prefect API in full.
"""

from __future__ import annotations

import logging
import re

# Libraries that log each connection, request or retry at INFO: WARNING and above only, unless -v.
NOISY_LIBRARIES = ("pgserver", "httpx", "httpcore", "asyncssh", "botocore", "aiobotocore", "s3fs", "docket")

# Prefect's engine lines about each run's life, not about the work (INFO and below only: a failed
# state is an ERROR and stays).
_CHATTER = re.compile(
    r"^(Finished in state |Created (task|flow|subflow) run |Beginning (flow|subflow) run |View at |Executing |"
    r"Submitting |Running on |Downloading flow code|Opening process|Completed submission|Worker submitting|"
    r"Running hook |Hook )"
)
# A task's INFO lines are its details (each table read, each file staged); its progress lines stay.
_PROGRESS = " rows so far ("
# Refusals the product expects and explains in its own lines (the report, the summary on stderr).
_EXPECTED_REFUSALS = ("FeedFilesRefused",)


# Prefect's shutdown chatter, after the command's last line: its events worker draining its queue.
_SHUTDOWN_CHATTER = re.compile(r"^Still processing items")


class ReadableRunLogs(logging.Filter):
    """Keeps what a person running ``totes`` needs (see the module's docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR and _SHUTDOWN_CHATTER.match(record.getMessage()):
            return False
        if record.levelno < logging.WARNING and record.name.startswith("prefect"):
            message = record.getMessage()
            if _CHATTER.match(message):
                return False
            if record.name == "prefect.task_runs" and _PROGRESS not in message:
                return False
        if record.name == "totes.alerts" and "\n" in record.getMessage():
            # The alert's subject: its whole text went to the alert channels (and is in -v's output).
            record.msg, record.args = record.getMessage().splitlines()[0], ()
        if _is_expected_refusal(record):
            # Said once, by the task that refused (and by the command's report): not again by the
            # flow's engine ("Encountered exception ...", "Finished in state Failed(...)").
            return not record.name.startswith("prefect.flow_runs")
        return True


def _is_expected_refusal(record: logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    if error is not None:
        return type(error).__name__ in _EXPECTED_REFUSALS
    return record.levelno >= logging.ERROR and any(name in record.getMessage() for name in _EXPECTED_REFUSALS)
