-- 018_inbox_walk_shorter: a combination without words walks at most 30 x limit rows of
-- its B-tree (016 let it walk 60 x limit) before the GIN spans take over.
--
-- 016 priced a walked row at some 0.3 us, the index-only read and the test of its tags.
-- A stage that does not fill the page then reads its rows a second time, to find where
-- it stopped (the OFFSET query of herald_inbox_page_walked()), so a row costs nearer
-- 0.45 us, and the 1.5 x overshoot of the stage sizes makes a walk that ends short of
-- 60 x limit read up to 90 x limit rows: some 2 ms, for a filter on 1-2% of the column.
-- One GIN span for such a filter (a rare tag and a status, or unread) costs 0.5-1 ms.
--
-- bench/bench_inbox, the same database and build, 60 and 30 run alternately:
--   combination p99   60: 4.57 / 4.76 / 4.08 / 4.80 ms      30: 4.00 / 3.96 / 4.29 / 4.10 ms
--   tag&unread p90    60: 3.95 / 2.78 / 3.79 ms             30: 2.20 / 2.24 / 2.22 ms
--   status&tag p90    60: 3.59 / 2.73 / 3.37 ms             30: 2.76 / 2.90 / 2.74 ms
-- A walk with words keeps 015's 20 x limit. Only this constant changes: the function is
-- edited in place, and its text must hold the old line exactly once.
DO $$
DECLARE
    src text := pg_get_functiondef('herald_inbox_page_walked'::regproc);
    old text := $e$most int := CASE WHEN covered THEN 60 ELSE 20 END * lim;$e$;
BEGIN
    IF array_length(string_to_array(src, old), 1) <> 2 THEN
        RAISE EXCEPTION 'herald_inbox_page_walked(): 018 does not find its line exactly once';
    END IF;
    EXECUTE replace(src, old, $e$most int := CASE WHEN covered THEN 30 ELSE 20 END * lim;$e$);
END
$$;
