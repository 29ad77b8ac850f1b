-- 009_sched_perf: cheaper scheduler leases and outcome records.
--
-- Every outbox row is updated at least twice on its way out (leased, then recorded),
-- and the monotonic-state trigger of 001/003 ran its PL/pgSQL function for each of
-- those updates: about 5 us per row, a tenth of a lease. The trigger now carries its
-- rule as a WHEN condition, evaluated without a function call, and runs the function
-- only when there is something to do: to keep a row whose state would move backwards,
-- or to stamp updated_at for a statement that did not set it itself. The scheduler's
-- statements set updated_at, so its updates never call the function.
--
-- The ranks are those of herald_state_rank() (queued 0, sending 1, sent 2, final 3),
-- spelled out as in 003's function. The function itself is unchanged.

DROP TRIGGER outbox_monotonic ON outbox;
CREATE TRIGGER outbox_monotonic BEFORE UPDATE OF state ON outbox FOR EACH ROW
    WHEN ((CASE NEW.state WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2 ELSE 3 END)
              < (CASE OLD.state WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2 ELSE 3 END)
          OR (OLD.state NOT IN ('queued', 'sending', 'sent') AND NEW.state <> OLD.state)
          OR NEW.updated_at = OLD.updated_at)
    EXECUTE FUNCTION herald_outbox_monotonic();
