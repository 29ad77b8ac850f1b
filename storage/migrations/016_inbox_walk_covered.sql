-- 016_inbox_walk_covered: the walk of 015 reads only its B-tree when the filter has no
-- words.
--
-- 015 walks the B-tree of a combination's plain column (unread's, the number's or the
-- status's) and tests the rest of the filter on each row, which it fetched from the
-- heap: some 2 us a row, so it gave up on combinations that needed more than 20 x limit
-- rows, and those went to 013's GIN spans. In bench/bench_inbox these were the slow
-- pages: "status=open&number=...&tag=pricing" (3% of the number's rows) and
-- "tag=lead&unread=1" (3% of the unread) each took one GIN scan of 2.5-3.7 ms, which
-- pays for the whole posting lists of the status, the number and the windows of the
-- span, whatever it returns.
--
-- Now the three B-trees carry, as INCLUDE columns, what the walk tests: the number's
-- the status, unread and tags; unread's the status, number and tags; the status's the
-- tags. A walk without words is an index-only scan (some 0.3 us a row), so it may go on
-- to 60 x limit rows in all, and only the page's rows are read from the heap (by id). A
-- walk with words still reads each row from the heap and keeps 015's 20 x limit. A walk
-- now has up to four stages, not two, each sized by the matches of all the rows walked
-- before it: a second stage that fell a few rows short (its estimate came from 200 rows)
-- used to hand those few to a GIN scan of 1.5 ms. The keys of the
-- three indexes are unchanged, so every other query uses them as before; every write of
-- a conversation already wrote a new entry in each of them (its last_message_at, status
-- or unread changes), so writes only carry the wider entries.
--
-- A page on a live inbox reads from the heap the rows of pages not yet marked all-visible
-- by vacuum (recently changed conversations), as 015 did for every row.

DROP INDEX conversations_number;
CREATE INDEX conversations_number ON conversations (org_id, our_number, last_message_at DESC, id DESC)
    INCLUDE (status, unread, tags);
DROP INDEX conversations_unread;
CREATE INDEX conversations_unread ON conversations (org_id, last_message_at DESC, id DESC)
    INCLUDE (status, our_number, tags) WHERE unread > 0;
DROP INDEX conversations_status;
CREATE INDEX conversations_status ON conversations (org_id, status, last_message_at DESC, id DESC)
    INCLUDE (tags);

-- 015's function (same arguments, same rows) with the index-only walk.
CREATE OR REPLACE FUNCTION herald_inbox_page_walked(org bigint, st text, tag text, number text, wq tsquery, unread boolean,
                                                    fq tsquery, pq tsquery, long_tag text,
                                                    after_key bigint, after_id bigint, lim int)
RETURNS TABLE (row_tid tid, id bigint, last_message_at timestamptz)
LANGUAGE plpgsql STABLE ROWS 50
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off
SET plan_cache_mode = force_generic_plan SET max_parallel_workers_per_gather = 0 AS $$
DECLARE
    cur_ts timestamptz := 'infinity';  -- rows before (cur_ts, cur_id) are still to be read
    cur_id bigint := 0;
    newest timestamptz;
    covered boolean := wq IS NULL;  -- the walk reads only the index
    walk int := CASE WHEN covered THEN 4 ELSE 2 END * lim;  -- the rows the next stage walks at most
    most int := CASE WHEN covered THEN 60 ELSE 20 END * lim;  -- the longest walk worth taking
    walked int := 0;        -- the rows walked, and their matches
    need int := lim;
    got int := 0;
    n int;
BEGIN
    IF after_key IS NOT NULL THEN
        cur_ts := 'epoch'::timestamptz + after_key * interval '1 microsecond';
        cur_id := after_id;
        newest := cur_ts;
    ELSE
        SELECT c.last_message_at INTO newest
          FROM conversations c WHERE c.org_id = org ORDER BY c.last_message_at DESC, c.id DESC LIMIT 1;
    END IF;
    -- Stages: walk rows, then, while the matches so far say the page fills within most
    -- rows in all, as many more as that takes and half as many again. The filter is
    -- tested as the plain definition tests it.
    FOR stage IN 1..4 LOOP
        IF unread AND covered THEN
            RETURN QUERY SELECT c.ctid, c.id, c.last_message_at FROM (
                             SELECT w.id FROM (
                                 SELECT c.id, c.status, c.our_number, c.tags FROM conversations c
                                  WHERE c.org_id = org AND c.unread > 0 AND (c.last_message_at, c.id) < (cur_ts, cur_id)
                                  ORDER BY c.last_message_at DESC, c.id DESC LIMIT walk) w
                              WHERE (st IS NULL OR w.status = st) AND (number IS NULL OR w.our_number = number)
                                AND (tag IS NULL OR w.tags @> ARRAY[tag])
                              LIMIT need) m JOIN conversations c ON c.id = m.id;
        ELSIF unread THEN
            RETURN QUERY SELECT w.ctid, w.id, w.last_message_at FROM (
                             SELECT c.ctid, c.id, c.last_message_at, c.status, c.our_number, c.tags, c.search
                               FROM conversations c
                              WHERE c.org_id = org AND c.unread > 0 AND (c.last_message_at, c.id) < (cur_ts, cur_id)
                              ORDER BY c.last_message_at DESC, c.id DESC LIMIT walk) w
                          WHERE (st IS NULL OR w.status = st) AND (number IS NULL OR w.our_number = number)
                            AND (tag IS NULL OR w.tags @> ARRAY[tag]) AND w.search @@ wq
                          LIMIT need;
        ELSIF number IS NOT NULL AND covered THEN
            RETURN QUERY SELECT c.ctid, c.id, c.last_message_at FROM (
                             SELECT w.id FROM (
                                 SELECT c.id, c.status, c.tags FROM conversations c
                                  WHERE c.org_id = org AND c.our_number = number AND (c.last_message_at, c.id) < (cur_ts, cur_id)
                                  ORDER BY c.last_message_at DESC, c.id DESC LIMIT walk) w
                              WHERE (st IS NULL OR w.status = st) AND (tag IS NULL OR w.tags @> ARRAY[tag])
                              LIMIT need) m JOIN conversations c ON c.id = m.id;
        ELSIF number IS NOT NULL THEN
            RETURN QUERY SELECT w.ctid, w.id, w.last_message_at FROM (
                             SELECT c.ctid, c.id, c.last_message_at, c.status, c.tags, c.search
                               FROM conversations c
                              WHERE c.org_id = org AND c.our_number = number AND (c.last_message_at, c.id) < (cur_ts, cur_id)
                              ORDER BY c.last_message_at DESC, c.id DESC LIMIT walk) w
                          WHERE (st IS NULL OR w.status = st)
                            AND (tag IS NULL OR w.tags @> ARRAY[tag]) AND w.search @@ wq
                          LIMIT need;
        ELSIF covered THEN
            RETURN QUERY SELECT c.ctid, c.id, c.last_message_at FROM (
                             SELECT w.id FROM (
                                 SELECT c.id, c.tags FROM conversations c
                                  WHERE c.org_id = org AND c.status = st AND (c.last_message_at, c.id) < (cur_ts, cur_id)
                                  ORDER BY c.last_message_at DESC, c.id DESC LIMIT walk) w
                              WHERE tag IS NULL OR w.tags @> ARRAY[tag]
                              LIMIT need) m JOIN conversations c ON c.id = m.id;
        ELSE
            RETURN QUERY SELECT w.ctid, w.id, w.last_message_at FROM (
                             SELECT c.ctid, c.id, c.last_message_at, c.tags, c.search
                               FROM conversations c
                              WHERE c.org_id = org AND c.status = st AND (c.last_message_at, c.id) < (cur_ts, cur_id)
                              ORDER BY c.last_message_at DESC, c.id DESC LIMIT walk) w
                          WHERE (tag IS NULL OR w.tags @> ARRAY[tag]) AND w.search @@ wq
                          LIMIT need;
        END IF;
        GET DIAGNOSTICS n = ROW_COUNT;
        need := need - n;
        got := got + n;
        walked := walked + walk;
        EXIT WHEN need = 0;
        -- Where the walk stopped: its last row (the keys only, from the index).
        IF unread THEN
            SELECT c.last_message_at, c.id INTO cur_ts, cur_id
              FROM conversations c
             WHERE c.org_id = org AND c.unread > 0 AND (c.last_message_at, c.id) < (cur_ts, cur_id)
             ORDER BY c.last_message_at DESC, c.id DESC OFFSET walk - 1 LIMIT 1;
        ELSIF number IS NOT NULL THEN
            SELECT c.last_message_at, c.id INTO cur_ts, cur_id
              FROM conversations c
             WHERE c.org_id = org AND c.our_number = number AND (c.last_message_at, c.id) < (cur_ts, cur_id)
             ORDER BY c.last_message_at DESC, c.id DESC OFFSET walk - 1 LIMIT 1;
        ELSE
            SELECT c.last_message_at, c.id INTO cur_ts, cur_id
              FROM conversations c
             WHERE c.org_id = org AND c.status = st AND (c.last_message_at, c.id) < (cur_ts, cur_id)
             ORDER BY c.last_message_at DESC, c.id DESC OFFSET walk - 1 LIMIT 1;
        END IF;
        IF NOT FOUND THEN
            RETURN;  -- the walk read every row of the column before the cursor
        END IF;
        EXIT WHEN stage = 4 OR got = 0 OR walked + need::float8 * walked / got > most;
        walk := ceil(1.5 * need * walked / got)::int;
    END LOOP;
    IF need = 0 THEN
        RETURN;
    END IF;
    -- The rest from the spans, the hours walked (from the cursor, or the org's newest
    -- activity, to the last row walked) counting as the first span.
    RETURN QUERY SELECT * FROM herald_inbox_page_keyed(
        org, fq, pq, long_tag, (extract(epoch FROM cur_ts - 'epoch'::timestamptz) * 1000000)::bigint, cur_id, need,
        greatest(extract(epoch FROM newest - cur_ts) / 3600, 1.0 / 60), got);
END
$$;
