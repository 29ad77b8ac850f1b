-- 013_inbox_windows: a page of the inbox list filtered by a tag or words reads about
-- as many conversations as it shows, however common the filter is.
--
-- 008 reads such a page one of two ways: a walk of the conversations newest first,
-- testing each one's document (cheap when the filter is common; each test unpacks a
-- document, some 20 us), or a GIN lookup of every match, each read from the heap and
-- all sorted (cheap when it is rare). A filter in between costs thousands of row reads
-- either way: in bench/bench_inbox (100,000 conversations over six months) a tag on 3%
-- of them or a word in 2% took 6-10 ms a page, where the aim is 5 ms at p99; and a
-- number with a tag intersected the tag's matches with a bitmap of every conversation
-- of that number (7 ms for 40,000).
--
-- Each conversation now also has "place" keys, in a tsvector column of their own that
-- Postgres computes whenever the row is written, under the same GIN index as the
-- document (one scan ANDs keys of both):
--   "12%+15005550006"  the number it is on;
--   "12!unread"        when it has unread messages;
--   "12@L.n"           for the hour h (since the epoch) of its last_message_at, one key
--                      per level L = 0..7 of aligned windows of 4^L hours, n = h >> 2L:
--                      an hour, 4 hours, 16, 64 (2.7 days), 256 (11 days), 1,024
--                      (43 days), 4,096 (171 days) and 16,384 (1.9 years).
-- Any span of hours is then a few window keys ORed, and a page with a tag or words is
-- read span by span, newest first: each span one GIN lookup of (filter AND status AND
-- number AND unread AND the span's windows), whose matches are read and sorted. The
-- first span is the hours of the next 2 x limit conversations of the org (whatever
-- the filter, it holds no more matches than that); the next ones as long as the rate
-- of matches seen so far says will hold twice the rows still needed (at most 16 times
-- what was looked up before), and the last, once the rest of the org's history should
-- hold no more than four times that, has no window keys. A common filter fills a page
-- from the first span; a rare one takes three or four lookups.
--
-- Write cost: nine or ten more GIN entries for every write of a conversation (none
-- is HOT: the GIN index takes all of a new row version's keys), and the place computed
-- by the column's own expression, no trigger.

-- The hour of ts, counted from the epoch. (Through an interval: extract() from a
-- timestamptz is only STABLE, and would keep this function from being inlined.)
CREATE FUNCTION herald_search_hour(ts timestamptz) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT floor(extract(epoch FROM ts - timestamptz 'epoch') / 3600)::int $$;

-- The query for org's number; for its conversations with unread messages.
CREATE FUNCTION herald_search_number(org bigint, number text) RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN ('''' || replace(replace(org || '%' || number, '\', '\\'), '''', '\''') || '''')::tsquery;
END
$$;
CREATE FUNCTION herald_search_unread(org bigint) RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN ('''' || org || '!unread''')::tsquery;
END
$$;

-- The query for org's hours lo..hi (lo <= hi): their fewest aligned windows, ORed.
CREATE FUNCTION herald_search_span(org bigint, lo int, hi int) RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    keys text[] := '{}';
    lvl int;
BEGIN
    WHILE hi >= lo LOOP
        lvl := 0;
        WHILE lvl < 7 AND (hi + 1) % (1 << (2 * (lvl + 1))) = 0 AND hi - (1 << (2 * (lvl + 1))) + 1 >= lo LOOP
            lvl := lvl + 1;
        END LOOP;
        keys := keys || ('''' || org || '@' || lvl || '.' || (hi >> (2 * lvl)) || '''');
        hi := hi - (1 << (2 * lvl));
    END LOOP;
    RETURN array_to_string(keys, ' | ')::tsquery;
END
$$;

-- The place keys live in a column of their own, computed by Postgres whenever the row
-- is written (whoever writes it: the webhook's batch, an agent reply, mark-read), and
-- the GIN index covers both columns, so one scan ANDs the filter's keys in the
-- document with the span's in the place. The expression is written out, each hour as
-- herald_search_hour() computes it: a SQL function in it would be inlined again, its
-- text parsed, at the start of every statement that writes conversations.
ALTER TABLE conversations ADD COLUMN place tsvector
    GENERATED ALWAYS AS (array_to_tsvector(
                             ARRAY[org_id::text || '%' || our_number,
                                  org_id::text || '@0.' || (floor(extract(epoch FROM last_message_at - timestamptz 'epoch') / 3600)::int)::text,
                                  org_id::text || '@1.' || (floor(extract(epoch FROM last_message_at - timestamptz 'epoch') / 3600)::int >> 2)::text,
                                  org_id::text || '@2.' || (floor(extract(epoch FROM last_message_at - timestamptz 'epoch') / 3600)::int >> 4)::text,
                                  org_id::text || '@3.' || (floor(extract(epoch FROM last_message_at - timestamptz 'epoch') / 3600)::int >> 6)::text,
                                  org_id::text || '@4.' || (floor(extract(epoch FROM last_message_at - timestamptz 'epoch') / 3600)::int >> 8)::text,
                                  org_id::text || '@5.' || (floor(extract(epoch FROM last_message_at - timestamptz 'epoch') / 3600)::int >> 10)::text,
                                  org_id::text || '@6.' || (floor(extract(epoch FROM last_message_at - timestamptz 'epoch') / 3600)::int >> 12)::text,
                                  org_id::text || '@7.' || (floor(extract(epoch FROM last_message_at - timestamptz 'epoch') / 3600)::int >> 14)::text]
                             || CASE WHEN unread > 0 THEN ARRAY[org_id::text || '!unread'] ELSE '{}'::text[] END))
    STORED;
DROP INDEX conversations_search;
CREATE INDEX conversations_search ON conversations USING gin (search, place) WITH (gin_pending_list_limit = 512);

ANALYZE conversations;

-- The keys of a page of org's list whose filter has keys in the document (fq: the tag,
-- words and status) and maybe in the place (pq: the number and unread; NULL: none),
-- in spans of hours as above, from the cursor (or the org's newest activity) back to
-- the org's oldest; long_tag is a tag too long to have a key, tested on the rows. Only
-- GIN lookups are wanted for the spans, so the plans are generic ones, with neither
-- sequential scans nor a B-tree on the org (whose bitmap of every conversation of the
-- org the planner would intersect with the lookup), nor an order an index gives (a
-- walk in time order would not stop at the span's start).
CREATE FUNCTION herald_inbox_page_keyed(org bigint, fq tsquery, pq tsquery, long_tag text,
                                        after_key bigint, after_id bigint, lim int)
RETURNS TABLE (row_tid tid, id bigint, last_message_at timestamptz)
LANGUAGE plpgsql STABLE ROWS 50
SET enable_seqscan = off SET plan_cache_mode = force_generic_plan SET max_parallel_workers_per_gather = 0 AS $$
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
    -- The first span: the hours of the next 2 * lim conversations of the org.
    SELECT c.last_message_at INTO edge
      FROM conversations c WHERE c.org_id = org AND (c.last_message_at, c.id) < (cur_ts, cur_id)
     ORDER BY c.last_message_at DESC, c.id DESC OFFSET 2 * lim LIMIT 1;
    span := CASE WHEN edge IS NULL THEN h - oldest + 1 ELSE h - herald_search_hour(edge) + 1 END;
    WHILE need > 0 AND h >= oldest LOOP
        IF covered > 0 AND (found + 1) / covered * (h - oldest + 1) <= 4 * need THEN
            span := h - oldest + 1;
        ELSIF covered > 0 THEN
            span := greatest(1, least(2 * need * covered / (found + 1), 16 * covered, h - oldest + 1)::bigint);
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

-- The keys of one page, as 008's herald_inbox_page() (same arguments, same rows): with
-- a tag or q, from herald_inbox_page_keyed(); else as 008 reads them, walking the list
-- index of the status, the number, the unread conversations or all.
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
        RETURN QUERY SELECT * FROM herald_inbox_page_keyed(org, fq, pq, CASE WHEN octet_length(tag) > 48 THEN tag END,
                                                           after_key, after_id, lim);
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
