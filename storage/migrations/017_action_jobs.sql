-- 017_action_jobs: the calls of go-to-flow, ai-assistant and trigger-automation survive a
-- crash or a restart of `herald serve`.
--
-- The webhook's transaction records each such action as an event whose detail has
-- "status": "pending" (004). Herald made the call after the commit, from memory only: a
-- crash, a SIGTERM during a retry's backoff, or more than 10,000 calls in flight left the
-- event pending and the call was never made. Now the pending event is the job:
--   * the statement that records a call's outcome (a new event) also sets the pending
--     event's status to "done", and records nothing when another process did so first;
--   * `herald serve` sweeps (HERALD_JOB_SWEEP_MS) for pending events whose lease has run
--     out (HERALD_JOB_LEASE_S after the event, or after the sweep that last claimed it),
--     claims them with FOR UPDATE SKIP LOCKED, sets "lease_until", and makes the call
--     again; one older than a day is given up with an "expired" outcome instead.
-- So a call is made at least once; a crash between the call and its outcome makes it
-- twice. The index holds only the pending events, so the sweep reads only those.

CREATE INDEX conversation_events_pending ON conversation_events (message_id)
    WHERE (detail->>'status') = 'pending';

-- Before 017 nothing set a finished call's event to "done": those with an outcome are.
-- (An outcome event is a later event of the same message and action whose status is not
-- "pending".)
UPDATE conversation_events e
   SET detail = jsonb_set(e.detail, '{status}', '"done"')
 WHERE (e.detail->>'status') = 'pending'
   AND EXISTS (SELECT 1 FROM conversation_events o
                WHERE o.conversation_id = e.conversation_id AND o.id > e.id
                  AND o.message_id = e.message_id AND o.action = e.action
                  AND (o.detail->>'status') IS DISTINCT FROM 'pending');
