-- 015_inbox_combo: a page of the inbox list whose filter combines a status, a number or
-- unread with a tag or words starts with a walk of that column's B-tree.
--
-- 013 reads such a page span by span of hours, each span one GIN scan of all the
-- filter's keys. The rows of a GIN key are in heap order, not in time order, so a scan
-- steps through most of each large key's posting list whatever the span: a status (a
-- quarter or three quarters of the org), a number (up to 40% in bench/bench_inbox), a
-- common tag or word each cost some 0.1-0.5 ms a scan. A combination pays for all of
-- them in every span, and it needs more spans than one filter: the first span holds the
-- hours of the next 2 x limit conversations of the org, where a combination of three
-- filters matches a few of them, and the spans after it grow at most 16-fold. In
-- bench/bench_inbox "status=open&number=...&tag=..." took three or four scans, 5-15 ms
-- a page.
--
-- Now such a page first walks the B-tree (org_id, <column>, last_message_at DESC, id
-- DESC) of its plain column - unread's if given, else the number's, else the status's -
-- newest first from the cursor, and tests the rest of the filter on each row as the
-- plain definition does (status, number and unread are columns, the tag is in the tags
-- array; words are tested on the document): 2 x limit rows, then, if their matches say
-- the page fills within 20 x limit rows, as many more as that takes and half as many
-- again. A common combination fills its page there, from a few hundred rows (1-3 us
-- each). Otherwise:
--   - if the walk ran out of rows, the page is complete;
--   - else the rest is read by 013's spans, from where the walk stopped, the walk
--     counting as the first span: its hours and its matches give the next span's
--     length, sized for four times the rows still needed (at most 64 times the hours
--     covered; the last span, without window keys, once the rest should hold no more
--     than 16 times them). The GIN scan's cost is mostly its large keys, whatever the
--     span, and a second scan costs more than a few more rows read from a longer one.
--     A rare combination so takes one GIN scan, sometimes two, instead of three or four.
--
-- A combination without those columns (a tag with words, two words or more) still
-- reads spans only, but its first span holds the hours of the next 8 x limit
-- conversations of the org, not 2 x limit: each of its scans pays for each of its
-- large keys, and it matches fewer of them than one filter.
--
-- No new column, key or index: writes cost what they cost after 013.

-- 013's span reader (same arguments, same rows), with the first span given: seen_hours
-- hours before the cursor were already read and held seen_found matches; or, with
-- seen_hours 0, the first span the hours of the next first * lim conversations. With
-- seen_hours 0 and first 2 it is 013's herald_inbox_page_keyed().
DROP FUNCTION herald_inbox_page_keyed(bigint, tsquery, tsquery, text, bigint, bigint, int);
CREATE FUNCTION herald_inbox_page_keyed(org bigint, fq tsquery, pq tsquery, long_tag text,
                                        after_key bigint, after_id bigint, lim int,
                                        seen_hours float8 DEFAULT 0, seen_found bigint DEFAULT 0, first int DEFAULT 2)
RETURNS TABLE (row_tid tid, id bigint, last_message_at timestamptz)
LANGUAGE plpgsql STABLE ROWS 50
SET enable_seqscan = off SET enable_bitmapscan = on SET enable_sort = on  -- whatever the caller set
SET plan_cache_mode = force_generic_plan SET max_parallel_workers_per_gather = 0 AS $$
DECLARE
    cur_ts timestamptz := 'infinity';  -- rows before (cur_ts, cur_id) are still to be read
    cur_id bigint := 0;
    newest timestamptz;     -- the cursor, or the org's newest activity
    edge timestamptz;
    h int;                  -- the newest hour not yet looked up
    oldest int;
    span bigint;
    sq tsquery;             -- the span's keys in the place, with pq
    covered float8 := 0;    -- hours looked up, and the rows they held
    found bigint := 0;
    need int := lim;
    n int;
    last int := 4;          -- the last span once the rest should hold no more than last * need
    ahead int := 2;         -- else a span for ahead * need, at most grow times the hours covered
    grow int := 16;
BEGIN
    SELECT herald_search_hour(c.last_message_at) INTO oldest
      FROM conversations c WHERE c.org_id = org ORDER BY c.last_message_at, c.id LIMIT 1;
    IF after_key IS NULL THEN
        SELECT c.last_message_at INTO newest
          FROM conversations c WHERE c.org_id = org ORDER BY c.last_message_at DESC, c.id DESC LIMIT 1;
    ELSE
        cur_ts := 'epoch'::timestamptz + after_key * interval '1 microsecond';
        cur_id := after_id;
        newest := cur_ts;
    END IF;
    h := herald_search_hour(newest);
    IF seen_hours > 0 THEN
        covered := seen_hours;
        found := seen_found;
        last := 16;
        ahead := 4;
        grow := 64;
    ELSE
        -- The first span: the hours of the next first * lim conversations of the org.
        SELECT c.last_message_at INTO edge
          FROM conversations c WHERE c.org_id = org AND (c.last_message_at, c.id) < (cur_ts, cur_id)
         ORDER BY c.last_message_at DESC, c.id DESC OFFSET first * lim LIMIT 1;
        span := CASE WHEN edge IS NULL THEN h - oldest + 1 ELSE h - herald_search_hour(edge) + 1 END;
    END IF;
    WHILE need > 0 AND h >= oldest LOOP
        IF covered > 0 AND (found + 1) / covered * (h - oldest + 1) <= last * need THEN
            span := h - oldest + 1;
        ELSIF covered > 0 THEN
            span := greatest(1, least(ahead * need * covered / (found + 1), grow * covered, h - oldest + 1)::bigint);
        END IF;
        IF h - span >= oldest THEN
            sq := herald_search_span(org, (h - span + 1)::int, h);
            IF pq IS NOT NULL THEN
                sq := pq && sq;
            END IF;
        ELSE
            sq := pq;  -- the rest of the history: no span keys
        END IF;
        IF sq IS NULL THEN
            RETURN QUERY SELECT c.ctid, c.id, c.last_message_at FROM conversations c
                          WHERE c.search @@ fq
                            AND c.org_id + 0 = org AND herald_search_hour(c.last_message_at) <= h
                            AND (c.last_message_at, c.id) < (cur_ts, cur_id)
                            AND (long_tag IS NULL OR c.tags @> ARRAY[long_tag])
                          ORDER BY c.last_message_at + interval '0 s' DESC, c.id DESC LIMIT need;
        ELSE
            RETURN QUERY SELECT c.ctid, c.id, c.last_message_at FROM conversations c
                          WHERE c.search @@ fq AND c.place @@ sq
                            AND c.org_id + 0 = org AND herald_search_hour(c.last_message_at) <= h
                            AND (c.last_message_at, c.id) < (cur_ts, cur_id)
                            AND (long_tag IS NULL OR c.tags @> ARRAY[long_tag])
                          ORDER BY c.last_message_at + interval '0 s' DESC, c.id DESC LIMIT need;
        END IF;
        GET DIAGNOSTICS n = ROW_COUNT;
        need := need - n;
        found := found + n;
        -- The first span counts from its edge to the newest row.
        covered := covered + CASE WHEN covered = 0
                                  THEN greatest(extract(epoch FROM newest - edge) / 3600, 1.0 / 60)
                                  ELSE span END;
        h := h - span;
    END LOOP;
END
$$;

-- A page of a combination (a tag or words, and a status, a number or unread): the walk
-- described above, then herald_inbox_page_keyed() from where it stopped. wq: the words'
-- query (NULL: no words); fq, pq, long_tag: as herald_inbox_page_keyed() takes them.
CREATE FUNCTION herald_inbox_page_walked(org bigint, st text, tag text, number text, wq tsquery, unread boolean,
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
    walk int := 2 * lim;    -- the rows of the column the next stage walks at most
    need int := lim;
    got int := 0;           -- the matches of the walk
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
    -- Two stages: 2 * lim rows, then, if their matches say the page fills within 20 * lim
    -- rows, as many more as that takes (half as many again). The filter is tested as the
    -- plain definition tests it.
    FOR stage IN 1..2 LOOP
        IF unread THEN
            RETURN QUERY SELECT w.ctid, w.id, w.last_message_at FROM (
                             SELECT c.ctid, c.id, c.last_message_at, c.status, c.our_number, c.tags, c.search
                               FROM conversations c
                              WHERE c.org_id = org AND c.unread > 0 AND (c.last_message_at, c.id) < (cur_ts, cur_id)
                              ORDER BY c.last_message_at DESC, c.id DESC LIMIT walk) w
                          WHERE (st IS NULL OR w.status = st) AND (number IS NULL OR w.our_number = number)
                            AND (tag IS NULL OR w.tags @> ARRAY[tag]) AND (wq IS NULL OR w.search @@ wq)
                          LIMIT need;
            GET DIAGNOSTICS n = ROW_COUNT;
            need := need - n;
            got := got + n;
            EXIT WHEN need = 0;
            SELECT c.last_message_at, c.id INTO cur_ts, cur_id
              FROM conversations c
             WHERE c.org_id = org AND c.unread > 0 AND (c.last_message_at, c.id) < (cur_ts, cur_id)
             ORDER BY c.last_message_at DESC, c.id DESC OFFSET walk - 1 LIMIT 1;
        ELSIF number IS NOT NULL THEN
            RETURN QUERY SELECT w.ctid, w.id, w.last_message_at FROM (
                             SELECT c.ctid, c.id, c.last_message_at, c.status, c.tags, c.search
                               FROM conversations c
                              WHERE c.org_id = org AND c.our_number = number AND (c.last_message_at, c.id) < (cur_ts, cur_id)
                              ORDER BY c.last_message_at DESC, c.id DESC LIMIT walk) w
                          WHERE (st IS NULL OR w.status = st)
                            AND (tag IS NULL OR w.tags @> ARRAY[tag]) AND (wq IS NULL OR w.search @@ wq)
                          LIMIT need;
            GET DIAGNOSTICS n = ROW_COUNT;
            need := need - n;
            got := got + n;
            EXIT WHEN need = 0;
            SELECT c.last_message_at, c.id INTO cur_ts, cur_id
              FROM conversations c
             WHERE c.org_id = org AND c.our_number = number AND (c.last_message_at, c.id) < (cur_ts, cur_id)
             ORDER BY c.last_message_at DESC, c.id DESC OFFSET walk - 1 LIMIT 1;
        ELSE
            RETURN QUERY SELECT w.ctid, w.id, w.last_message_at FROM (
                             SELECT c.ctid, c.id, c.last_message_at, c.tags, c.search
                               FROM conversations c
                              WHERE c.org_id = org AND c.status = st AND (c.last_message_at, c.id) < (cur_ts, cur_id)
                              ORDER BY c.last_message_at DESC, c.id DESC LIMIT walk) w
                          WHERE (tag IS NULL OR w.tags @> ARRAY[tag]) AND (wq IS NULL OR w.search @@ wq)
                          LIMIT need;
            GET DIAGNOSTICS n = ROW_COUNT;
            need := need - n;
            got := got + n;
            EXIT WHEN need = 0;
            SELECT c.last_message_at, c.id INTO cur_ts, cur_id
              FROM conversations c
             WHERE c.org_id = org AND c.status = st AND (c.last_message_at, c.id) < (cur_ts, cur_id)
             ORDER BY c.last_message_at DESC, c.id DESC OFFSET walk - 1 LIMIT 1;
        END IF;
        IF NOT FOUND THEN
            RETURN;  -- the walk read every row of the column before the cursor
        END IF;
        EXIT WHEN stage = 2 OR n = 0 OR need::float8 * walk / n > 20 * lim;
        walk := ceil(1.5 * need * walk / n)::int;
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

-- The keys of one page, as 013's herald_inbox_page() (same arguments, same rows), a
-- combination of a tag or q with a status, a number or unread read by
-- herald_inbox_page_walked().
CREATE OR REPLACE FUNCTION herald_inbox_page(org bigint, status text, tag text, number text, q text, unread boolean,
                                             after_key bigint, after_id bigint, lim int)
RETURNS TABLE (row_tid tid, id bigint, last_message_at timestamptz)
LANGUAGE plpgsql STABLE ROWS 50
SET effective_cache_size = '1MB' SET max_parallel_workers_per_gather = 0 AS $$
DECLARE
    sql text := 'SELECT c.ctid, c.id, c.last_message_at FROM conversations c WHERE c.org_id = $1';
    fq tsquery;
    pq tsquery;
    wq tsquery;
BEGIN
    IF tag IS NOT NULL AND octet_length(tag) <= 48 THEN
        fq := herald_search_tag(org, tag);
    END IF;
    IF q IS NOT NULL THEN
        wq := herald_search_query(org, q);
        -- Words without a lexeme match nothing, as in 008 (an empty query is no filter to &&).
        IF numnode(wq) = 0 THEN
            RETURN;
        END IF;
        fq := CASE WHEN fq IS NULL THEN wq ELSE fq && wq END;
    END IF;
    IF fq IS NOT NULL THEN
        IF status IS NOT NULL THEN
            fq := fq && herald_search_status(org, status);
        END IF;
        IF number IS NOT NULL THEN
            pq := herald_search_number(org, number);
        END IF;
        IF unread THEN
            pq := CASE WHEN pq IS NULL THEN herald_search_unread(org) ELSE pq && herald_search_unread(org) END;
        END IF;
        IF status IS NOT NULL OR number IS NOT NULL OR unread THEN
            RETURN QUERY SELECT * FROM herald_inbox_page_walked(org, status, tag, number, wq, unread, fq, pq,
                                                                CASE WHEN octet_length(tag) > 48 THEN tag END,
                                                                after_key, after_id, lim);
        ELSE
            RETURN QUERY SELECT * FROM herald_inbox_page_keyed(org, fq, pq, CASE WHEN octet_length(tag) > 48 THEN tag END,
                                                               after_key, after_id, lim, 0, 0,
                                                               CASE WHEN numnode(fq) > 1 THEN 8 ELSE 2 END);
        END IF;
        RETURN;
    END IF;
    IF tag IS NOT NULL THEN
        sql := sql || ' AND c.tags @> ARRAY[$3]';
    END IF;
    IF status IS NOT NULL THEN
        sql := sql || ' AND c.status = $2';
    END IF;
    IF number IS NOT NULL THEN
        sql := sql || ' AND c.our_number = $4';
    END IF;
    IF unread THEN
        sql := sql || ' AND c.unread > 0';
    END IF;
    IF after_key IS NOT NULL THEN
        sql := sql || ' AND (c.last_message_at, c.id) < (''epoch''::timestamptz + $6 * interval ''1 microsecond'', $7)';
    END IF;
    RETURN QUERY EXECUTE sql || ' ORDER BY c.last_message_at DESC, c.id DESC LIMIT $8'
        USING org, status, tag, number, q, after_key, after_id, lim;
END
$$;
