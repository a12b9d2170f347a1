"""User-facing errors: the CLI prints their message and exits non-zero, without a traceback."""


class Yt8mError(Exception):
    """An error the user can act on; the message names the file, the record and the fix."""


class InputError(Yt8mError):
    """A shard or input file that cannot be used as it is.

    Args:
        path: the offending file.
        message: what is wrong and what was expected.
        record: zero-based record index inside the shard, when the problem is in one record.
        offset: byte offset of that record, when known.
    """

    def __init__(self, path, message, record=None, offset=None):
        self.path = str(path)
        self.record = record
        self.offset = offset
        where = self.path
        if record is not None:
            where += f", record {record}"
            if offset is not None:
                where += f" (byte {offset})"
        super().__init__(f"{where}: {message}")
