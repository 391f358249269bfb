-- Version 10: the dispatcher reads each webhook's oldest due deliveries through an
-- index of pending rows only (delivered ones pile up until retention purges them).
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON webhook_deliveries (webhook_id, next_attempt_at)
    WHERE state = 'pending';
