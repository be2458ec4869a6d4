-- Where unqualified table names resolve for the rest of the transaction ($1: one of our own schema
-- names): the warehouse's schema, or pg_temp for a rebuild's shadow copy of the star schema (the
-- rebuilding session's temporary schema). pg_temp is named last on purpose: left out, it would be
-- searched first, and the shadow's tables have the warehouse's names.
select set_config('search_path', quote_ident($1) || ', pg_temp', true)
