-- 002_ingest: what the campaign CSV upload needs beyond 001.
--
-- Each campaign outbox row remembers the upload and the CSV record it came from, so
-- a later upload of the same number to the same campaign is reported as "duplicate
-- of row N of upload U" rather than just "already queued". Plain columns without a
-- foreign key: a per-row referential check would cost more than the whole COPY of
-- the row, and campaign_uploads rows are only deleted with their campaign (which
-- cascades to the outbox anyway).
ALTER TABLE outbox
    ADD COLUMN upload_id  bigint,
    ADD COLUMN upload_row bigint;
