-- 008_inbox_list: one search document per conversation, so that every filter of the
-- inbox list is an index range from the cursor or an index lookup of a few rows
-- (bench/bench_inbox.c: 1M messages in 100k conversations).
--
-- The q filter searched messages.body_tsv (a GIN index per message) and then had to
-- find each matching message's conversation and its activity time: for a word in a
-- few percent of the messages that is thousands of heap fetches in messages, whether
-- the plan starts from the GIN index or walks the conversations newest first and
-- probes each one's messages (15-65 ms a page at 1M messages). conversations.search
-- now holds the distinct words of the conversation's message bodies ('simple'
-- configuration, positions stripped), one key per tag and one for the status, each
-- prefixed with the org's id: "12:price", "12#vip", "12$open". A page is then either a walk of an index on (org_id, ...,
-- last_message_at DESC, id DESC) with the document as a filter (a common word or tag:
-- the page fills after a few hundred rows) or a GIN lookup of the few conversations
-- that have a rare one, sorted. The planner picks from the frequencies ANALYZE keeps
-- for the document's elements, which the prefix makes the org's own: a word or tag
-- common in one tenant and rare in another would otherwise send the second one's list
-- on a walk of all its conversations (30-40 ms), and a GIN lookup would return every
-- org's conversations to be filtered out.
--
-- q matches a conversation when every word of it occurs in the conversation (in any
-- of its messages), not only when one message has them all.
--
-- Write costs, paid by the inbound webhook. Every update of a conversation that is not
-- HOT (the webhook's always is: last_message_at is indexed) adds one GIN entry per
-- element of the document to the pending list, about 1 us each: some 70 for a
-- conversation of ten messages. The document is kept without writing the row twice:
-- the webhook's conversation upsert (and an agent reply) writes the start of the new
-- message as last_message_preview (left(body, 140)), and a BEFORE trigger adds its
-- words, and tag changes, to that same row version; an AFTER trigger on messages adds
-- what the preview did not cover (longer bodies, auto-replies, a new conversation's
-- first message) with a second update, when there is something new. Against that,
-- messages lose their GIN index and generated tsvector (to_tsvector() and some eight
-- GIN entries per message) and conversations their GIN index on tags.
--
-- A long thread would make every update of its conversation cost more and more, and
-- a tsvector holds at most 1 MB: a document keeps at most 1,000 words. When a message
-- brings a word that does not fit, the document is made again from the newest
-- messages, up to 500 words, so q finds a long thread by its recent words. Runs of
-- more than 48 non-blank characters (long links) are left out, and so are tags of
-- more than 48 bytes (the list query tests c.tags for such a tag).

ALTER TABLE conversations ADD COLUMN search tsvector NOT NULL DEFAULT '';
-- More sampled rows and elements than the default 100, the frequencies being per org:
-- 2,500 elements. (Each costs the planning of a q or tag filter some 30 ns.)
ALTER TABLE conversations ALTER COLUMN search SET STATISTICS 250;

-- The words of a text as org's documents keep them. One expression, so that it is
-- inlined into its callers (the triggers below run it for most inbound messages): the
-- org's id goes in after the quote that opens each word of the text form.
CREATE FUNCTION herald_search_words(org bigint, body text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT replace(' ' || strip(to_tsvector('simple', CASE WHEN char_length(body) > 48
                                                            THEN regexp_replace(body, '\S{49,}', ' ', 'g')
                                                            ELSE body END))::text,
                   ' ''', ' ''' || org || ':')::tsvector
$$;

-- The keys of org's tags (tags longer than 48 bytes have none). This one and the two
-- query builders are PL/pgSQL, whose statements are planned once per connection (a SQL
-- function that cannot be inlined is planned at each call from a new statement: that
-- was 0.2 ms of the planning of every q filter, which evaluates herald_search_query()).
CREATE FUNCTION herald_search_tags(org bigint, tags text[]) RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN array_to_tsvector(ARRAY(SELECT org || '#' || t FROM unnest(tags) t WHERE octet_length(t) <= 48));
END
$$;

-- The query for text q in org's documents: all the words of q, as plainto_tsquery().
CREATE FUNCTION herald_search_query(org bigint, q text) RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN (SELECT coalesce(string_agg('''' || replace(replace(org || ':' || w, '\', '\\'), '''', '\''') || '''',
                                       ' & '), '')::tsquery
              FROM unnest(tsvector_to_array(to_tsvector('simple', q))) w);
END
$$;

-- The query for tag t (of at most 48 bytes) in org's documents.
CREATE FUNCTION herald_search_tag(org bigint, t text) RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN ('''' || replace(replace(org || '#' || t, '\', '\\'), '''', '\''') || '''')::tsquery;
END
$$;

-- The key of status st ('open' or 'closed') in org's documents, and its query.
CREATE FUNCTION herald_search_status_key(org bigint, st text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT array_to_tsvector(ARRAY[org || '$' || st]) $$;
CREATE FUNCTION herald_search_status(org bigint, st text) RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN ('''' || org || '$' || st || '''')::tsquery;
END
$$;

-- Conversation conv's document made again: its tags and status, and the words of its
-- newest messages, newest first, while they fit in 500 words.
CREATE FUNCTION herald_search_rebuild(conv bigint) RETURNS tsvector
LANGUAGE plpgsql STABLE AS $$
DECLARE
    c record;
    m record;
    doc tsvector;
    w tsvector;
BEGIN
    SELECT org_id, tags, status INTO c FROM conversations WHERE id = conv;
    doc := herald_search_tags(c.org_id, c.tags) || herald_search_status_key(c.org_id, c.status);
    FOR m IN SELECT body FROM messages WHERE conversation_id = conv ORDER BY id DESC LOOP
        w := herald_search_words(c.org_id, m.body);
        EXIT WHEN length(doc || w) > 500;
        doc := doc || w;
    END LOOP;
    RETURN doc;
END
$$;

-- The existing conversations: their tags, status and the words of all their messages
-- (made again as above when more than 1,000).
UPDATE conversations SET search = herald_search_tags(org_id, tags) || herald_search_status_key(org_id, status);
UPDATE conversations c SET search = c.search || d.doc
  FROM (SELECT m.conversation_id, array_to_tsvector(array_agg(DISTINCT w)) AS doc
          FROM messages m, unnest(tsvector_to_array(herald_search_words(m.org_id, m.body))) w
         GROUP BY m.conversation_id) d
 WHERE c.id = d.conversation_id;
UPDATE conversations SET search = herald_search_rebuild(id) WHERE length(search) > 1000;

ALTER TABLE messages DROP COLUMN body_tsv;  -- and with it messages_fts
DROP INDEX conversations_tags;

-- Every search reads the whole pending list of a GIN index: keep it to 64 pages.
CREATE INDEX conversations_search ON conversations USING gin (search) WITH (gin_pending_list_limit = 512);

-- Tag and status changes, and the words of a new preview (a word its 140 characters
-- may have cut in two is left to the trigger on messages, which sees the whole body),
-- unless the statement wrote the document itself. An INSERT may be an upsert's
-- proposal that is thrown away: its preview is left to that trigger too.
CREATE FUNCTION herald_conversation_search() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    w tsvector;
    words_set boolean;
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.search := NEW.search || herald_search_status_key(NEW.org_id, NEW.status);
        IF cardinality(NEW.tags) > 0 THEN
            NEW.search := NEW.search || herald_search_tags(NEW.org_id, NEW.tags);
        END IF;
        RETURN NEW;
    END IF;
    words_set := NEW.search IS DISTINCT FROM OLD.search;
    IF NEW.tags IS DISTINCT FROM OLD.tags THEN
        NEW.search := ts_delete(NEW.search, tsvector_to_array(herald_search_tags(OLD.org_id, OLD.tags)))
                      || herald_search_tags(NEW.org_id, NEW.tags);
    END IF;
    -- A document the statement wrote may come from an upsert's proposal, with its status.
    IF NEW.status IS DISTINCT FROM OLD.status OR words_set THEN
        NEW.search := ts_delete(NEW.search, ARRAY[NEW.org_id || '$open', NEW.org_id || '$closed'])
                      || herald_search_status_key(NEW.org_id, NEW.status);
    END IF;
    IF NOT words_set AND NEW.last_message_preview <> ''
       AND NEW.last_message_preview IS DISTINCT FROM OLD.last_message_preview THEN
        w := herald_search_words(NEW.org_id, CASE WHEN char_length(NEW.last_message_preview) < 140
                                                  THEN NEW.last_message_preview
                                                  ELSE regexp_replace(NEW.last_message_preview, '\S*$', '') END);
        IF length(NEW.search) + length(w) <= 1000 THEN
            NEW.search := NEW.search || w;
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER conversations_search BEFORE INSERT OR UPDATE OF last_message_preview, tags, status, search
    ON conversations
    FOR EACH ROW EXECUTE FUNCTION herald_conversation_search();

-- The words of a new message that its conversation's document lacks. A message whose
-- whole body is the conversation's preview was added by the trigger above, unless the
-- document was full or had no words yet, only its keys (a new conversation).
CREATE FUNCTION herald_messages_search() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    c record;
    w tsvector;
BEGIN
    IF NEW.body = '' THEN
        RETURN NULL;
    END IF;
    SELECT search, last_message_preview AS preview, cardinality(tags) AS ntags INTO c
      FROM conversations WHERE id = NEW.conversation_id;
    IF c.preview = NEW.body AND char_length(NEW.body) < 140 AND length(c.search) > c.ntags + 1
       AND length(c.search) < 1000 THEN
        RETURN NULL;
    END IF;
    w := herald_search_words(NEW.org_id, NEW.body);
    IF length(c.search || w) = length(c.search) THEN
        RETURN NULL;
    END IF;
    -- From the row as it is when updated, not from c: another transaction may have added to it.
    UPDATE conversations SET search = CASE WHEN length(search || w) <= 1000 THEN search || w
                                           ELSE herald_search_rebuild(id) END
     WHERE id = NEW.conversation_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER messages_search AFTER INSERT ON messages FOR EACH ROW EXECUTE FUNCTION herald_messages_search();

-- The keys of one page of org's list, newest activity first, ids breaking ties: the
-- conversations after (after_key, after_id) (microseconds since the epoch, id; NULL:
-- from the start) that pass every filter given (NULL: none), with the ctid by which
-- storage/inbox.c reads each row (in the caller's snapshot: the function is STABLE).
--
-- The statement is planned at each call with the filters' values, so the planner sees
-- how common the tag or word is in the org, under two settings of its own. The list is
-- read by walks of indexes in last_message_at order, which is no order of the heap:
-- each row of a walk is a page read, wherever the cache is; with the default
-- effective_cache_size (4 GB) the planner counts a walk that stops after k rows as the
-- same fraction of a whole scan whose pages it expects mostly cached, takes a walk of
-- 5,000 rows for cheaper than a GIN lookup of 800, and loses 15-70 ms. And a page is a
-- few hundred rows at most: never worth starting parallel workers (the planner did,
-- 20 ms for a walk of 1 ms, when a filter looked expensive).
CREATE FUNCTION herald_inbox_page(org bigint, status text, tag text, number text, q text, unread boolean,
                                  after_key bigint, after_id bigint, lim int)
RETURNS TABLE (row_tid tid, id bigint, last_message_at timestamptz)
LANGUAGE plpgsql STABLE ROWS 50
SET effective_cache_size = '1MB' SET max_parallel_workers_per_gather = 0 AS $$
DECLARE
    sql text := 'SELECT c.ctid, c.id, c.last_message_at FROM conversations c WHERE c.org_id = $1';
    keys text[] := '{}';
BEGIN
    IF tag IS NOT NULL AND octet_length(tag) <= 48 THEN
        keys := keys || 'herald_search_tag($1, $3)'::text;
    ELSIF tag IS NOT NULL THEN
        sql := sql || ' AND c.tags @> ARRAY[$3]';
    END IF;
    IF q IS NOT NULL THEN
        keys := keys || 'herald_search_query($1, $5)'::text;
    END IF;
    -- With a tag or words, the status is a key too: one GIN scan intersects them all.
    IF status IS NOT NULL AND cardinality(keys) > 0 THEN
        keys := keys || 'herald_search_status($1, $2)'::text;
    ELSIF status IS NOT NULL THEN
        sql := sql || ' AND c.status = $2';
    END IF;
    IF cardinality(keys) > 0 THEN
        sql := sql || ' AND c.search @@ (' || array_to_string(keys, ' && ') || ')';
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
