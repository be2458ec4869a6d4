-- A rebuild's swap: empty the warehouse tables the rebuild replaces ({tables}: the star tables, the
-- batch record, in history mode the history tables), in the transaction that fills them again from the
-- shadow, so readers see the old warehouse until it commits. TRUNCATE keeps each table (its oid, so the
-- views, grants and comments on it stay); the record-id sequences are set after the copy.
truncate table {tables};
