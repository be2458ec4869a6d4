-- The settings that decide how a row prints as text, pinned for the session: every read hashes each
-- row's text (hashtextextended(row(...)::text, 0)), and the lake compares those hashes across runs,
-- so a server whose default DateStyle or TimeZone changes must not make every row look changed.
select
    set_config('DateStyle', 'ISO, MDY', false),
    set_config('TimeZone', 'UTC', false),
    set_config('IntervalStyle', 'postgres', false),
    set_config('extra_float_digits', '1', false);
