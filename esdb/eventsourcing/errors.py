"""esdb's errors as the eventsourcing library's persistence errors (PEP 249 names),
translated once, where the recorders call the client."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    IntegrityError,
    InternalError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
)

from esdb.client import (
    AlreadyExistsError,
    AppendConditionFailedError,
    EsdbError,
    IdempotencyConflictError,
    InvalidRequestError,
    NotFoundError,
    RequestTimeoutError,
    StreamDeletedError,
    TooLargeError,
    UnauthorizedError,
    UnavailableError,
    WrongExpectedVersionError,
)
from esdb.client import InternalError as EsdbInternalError

_TRANSLATIONS: tuple[tuple[type[EsdbError], type[PersistenceError]], ...] = (
    # A version already taken, an event id stored elsewhere, a tombstoned stream: the
    # record conflicts with what is stored.
    (WrongExpectedVersionError, IntegrityError),
    (IdempotencyConflictError, IntegrityError),
    (AlreadyExistsError, IntegrityError),
    (StreamDeletedError, IntegrityError),
    # A DCB decision's boundary changed since it was read.
    (AppendConditionFailedError, IntegrityError),
    (InvalidRequestError, DataError),
    (TooLargeError, DataError),
    # The store is missing (removed while in use): PEP 249's "table not found".
    (NotFoundError, ProgrammingError),
    (UnavailableError, OperationalError),
    (RequestTimeoutError, OperationalError),
    (UnauthorizedError, OperationalError),
    (EsdbInternalError, InternalError),
)


def persistence_error(error: EsdbError) -> PersistenceError:
    """The library's exception for an esdb error (its message kept)."""
    for esdb_class, library_class in _TRANSLATIONS:
        if isinstance(error, esdb_class):
            return library_class(str(error))
    return DatabaseError(str(error))


@contextmanager
def translated() -> Iterator[None]:
    """Raise esdb errors from the block as the library's persistence errors."""
    try:
        yield
    except EsdbError as e:
        raise persistence_error(e) from e
